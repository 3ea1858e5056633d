"""``modelhaul limit``: show the live bandwidth limit, or set it (global, a task's own, or
a schedule by the local clock). The ledger keeps it; every process running downloads
follows a change within a second (``downloader.manager.limits``)."""

from __future__ import annotations

import argparse

from downloader.cli import exitcodes
from downloader.cli.output import Output
from downloader.limits import Limits, format_rate, parse_rate
from downloader.manager import DownloadManager
from storage import LedgerError


async def run_limit(manager: DownloadManager, args: argparse.Namespace, out: Output) -> int:
    """Set what the arguments say (nothing: show the limits); exit 2 for a bad request."""
    if args.task is not None and args.rate is None:
        out.error("--task needs a RATE (e.g. 'modelhaul limit --task 7 2M', or off)")
        return exitcodes.USAGE
    try:
        if args.schedule is not None:
            off = args.schedule.strip().lower() == "off"
            limits = await manager.set_schedule(None if off else args.schedule)
            out.say("schedule removed: no global limit" if off else f"schedule: {limits.schedule}")
        elif args.rate is not None:
            rate = parse_rate(args.rate)
            limits = await manager.set_limit(rate, task_id=args.task)
            who = f"task {args.task}" if args.task is not None else "every download"
            out.say(f"limit for {who}: {_per_second(rate)}")
        else:
            limits = await manager.get_limits()
            _show(limits, out)
    except LedgerError as e:
        out.error(str(e))
        return exitcodes.code_for(e)
    if out.json:
        out.data(limits.to_dict())
    return exitcodes.OK


def _show(limits: Limits, out: Output) -> None:
    if limits.schedule is not None:
        out.say(f"global limit  by schedule {limits.schedule}")
        out.say(f"now           {_per_second(limits.now)} (rule {limits.rule})")
    else:
        out.say(f"global limit  {_per_second(limits.rate)}")
    if limits.process_rate is not None:
        out.say(f"this process  {_per_second(limits.process_rate)} (MODELHAUL_RATE_LIMIT)")
    for task_id, rate in sorted(limits.tasks.items()):
        out.say(f"task {task_id:<8} {_per_second(rate)}")


def _per_second(rate: int | None) -> str:
    return "off (no limit)" if rate is None else f"{format_rate(rate)}/s"
