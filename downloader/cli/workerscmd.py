"""``modelhaul workers``: the processes that run downloads on this ledger (workers, servers,
foreground gets), from their rows in the ledger: host, pid, how many tasks each runs, how
fast it receives, when it last beat. A row whose heartbeat is older than ``stale_after`` is
marked gone (a process killed outright, or a host cut off); live workers delete such rows
as they beat."""

from __future__ import annotations

import argparse
import time

from rich.table import Table

from downloader.cli import exitcodes
from downloader.cli.options import settings_for
from downloader.cli.output import Output
from downloader.json_shapes import worker_json
from downloader.progress import format_speed
from storage import LedgerError, open_ledger


async def run_workers(args: argparse.Namespace, out: Output) -> int:
    """List the workers (live first); exit 0 even when there are none."""
    settings = settings_for(args)
    try:
        # The ledger itself, not storage.glance: the rows are few and this is no hot path.
        async with await open_ledger(settings.ledger_target) as ledger:
            workers = await ledger.workers.list()
    except LedgerError as e:
        out.error(str(e))
        return exitcodes.code_for(e)
    now = time.time()
    shown = [worker_json(w, now=now, stale_after=settings.stale_after) for w in workers]
    shown.sort(key=lambda w: w["gone"])  # stable: live ones first, each by host and start
    if out.json:
        out.data({"workers": shown, "stale_after": settings.stale_after})
        return exitcodes.OK
    if not shown:
        out.say("no workers (nothing runs downloads on this ledger now)")
        return exitcodes.OK
    table = Table(box=None, header_style="bold")
    for column in ("HOST", "PID", "TASKS", "RATE", "HEARTBEAT", "VERSION", ""):
        table.add_column(column, no_wrap=True)
    for w in shown:
        table.add_row(
            w["host"],
            str(w["pid"]),
            str(w["tasks"]),
            format_speed(w["bytes_per_second"]) or "-",
            f"{w['seconds_since_heartbeat']:.0f}s ago",
            w["version"] or "?",
            "[red]gone[/red]" if w["gone"] else "",
        )
    out.console.print(table)
    return exitcodes.OK
