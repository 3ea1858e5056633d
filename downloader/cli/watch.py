"""``modelhaul watch``: every task of the ledger, live, whoever runs them.

A terminal gets a table redrawn in place; a pipe gets a line per change (NDJSON with
``--json``), so ``watch`` also works as a log for scripts.
"""

from __future__ import annotations

import asyncio
import json

from rich.live import Live
from rich.table import Table

from downloader.cli.display import line_for
from downloader.cli.output import Output
from downloader.manager import DownloadManager
from downloader.progress import DownloadProgress, format_bytes
from storage import TaskState

REFRESH = 0.5


async def watch_tasks(manager: DownloadManager, out: Output) -> None:
    """Follow every task until cancelled."""
    if out.live:
        with Live(console=out.console, auto_refresh=False, transient=False) as live:
            while True:
                live.update(_table(await _snapshot(manager)), refresh=True)
                await asyncio.sleep(REFRESH)
    seen: dict[int, tuple[object, ...]] = {}
    while True:
        for task_id, label, p in await _snapshot(manager):
            key = (p.state, p.downloaded_bytes, p.files_completed)
            if seen.get(task_id) == key:
                continue
            seen[task_id] = key
            if out.json:
                out.plain(json.dumps({**p.to_dict(), "label": label}))
            elif not out.quiet:
                out.plain(f"{line_for(task_id, p)} {label}")
        await asyncio.sleep(REFRESH)


async def _snapshot(manager: DownloadManager) -> list[tuple[int, str, DownloadProgress]]:
    tasks = await manager.list()
    return [(t.id, t.label, await manager.progress(t.id)) for t in tasks]


def _table(rows: list[tuple[int, str, DownloadProgress]]) -> Table:
    table = Table(box=None, header_style="bold", expand=True, title_justify="left")
    for column in ("ID", "STATE", "DONE", "BYTES", "SPEED", "ETA", "FILES", "WHAT"):
        table.add_column(column, no_wrap=column != "WHAT")
    active = sum(p.state is TaskState.DOWNLOADING for _, _, p in rows)
    speed = sum(p.bytes_per_second for _, _, p in rows)
    table.title = f"{len(rows)} tasks · {active} downloading · {format_bytes(speed)}/s"
    for task_id, label, p in rows:
        state = p.state.value if p.state else p.status.value
        table.add_row(
            str(task_id),
            state,
            f"{p.percent:.1f}%" if p.percent is not None else "",
            format_bytes(p.downloaded_bytes or 0)
            + (f" / {format_bytes(p.total_bytes)}" if p.total_bytes is not None else ""),
            (p.formatted_speed or "") if p.state is TaskState.DOWNLOADING else "",
            (p.formatted_eta or "") if p.state is TaskState.DOWNLOADING else "",
            f"{p.files_completed}/{p.total_files}" if p.total_files else "",
            label,
        )
    if not rows:
        table.add_row("", "no tasks", "", "", "", "", "", "")
    return table
