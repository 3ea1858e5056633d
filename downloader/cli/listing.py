"""``modelhaul ls``: the tasks, as a table or as JSON.

It reads the ledger through ``storage.glance`` (the standard library's sqlite3, read-only),
so a listing loads neither SQLAlchemy nor the manager and answers about as fast as
``hf cache ls``; where glance cannot answer (a ledger URL, another schema revision, a busy
file) it asks the manager, which opens and migrates the ledger as every command does.
"""

from __future__ import annotations

import argparse
import socket

from rich.table import Table

from downloader.cli import exitcodes
from downloader.cli.options import settings_for
from downloader.cli.output import Output
from downloader.json_shapes import task_json
from downloader.progress import format_bytes
from storage import FileRecord, TaskRecord, glance
from storage.states import states_of


async def list_tasks(args: argparse.Namespace, out: Output) -> int:
    """List tasks (``--state``), newest first."""
    settings = settings_for(args)
    states = states_of(args.state)
    tasks = await glance.tasks(settings.ledger_target, states)
    files: dict[int, list[FileRecord]] | None = {}
    if tasks and out.json:
        files = await glance.files(settings.ledger_target, [t.id for t in tasks])
    if tasks is None or files is None:
        tasks, files = await _from_the_manager(args, out.json)
    if out.json:
        out.data([task_json(t, files=files[t.id]) for t in tasks])
        return exitcodes.OK
    if not tasks:
        out.say("no tasks")
        return exitcodes.OK
    # Which host holds a task's files matters only once some are on another host than this
    # one (per-host destinations in a fleet); on one machine the column would only repeat it.
    here = socket.gethostname()
    hosts = any(t.files_host not in (None, here) for t in tasks)
    table = Table(box=None, header_style="bold")
    for column in ("ID", "STATE", "DONE", "SIZE", "FILES", *(("HOST",) if hosts else ()), "WHAT"):
        table.add_column(column, no_wrap=column != "WHAT")
    for t in tasks:
        done = f"{100 * t.downloaded_bytes / t.total_bytes:.1f}%" if t.total_bytes else ""
        size = format_bytes(t.total_bytes) if t.total_bytes is not None else "?"
        count = f"{t.files_done}/{t.files_total}" if t.files_total else ""
        host = (t.files_host or "",) if hosts else ()
        table.add_row(str(t.id), t.state.value, done, size, count, *host, t.label)
    out.console.print(table)
    return exitcodes.OK


async def _from_the_manager(
    args: argparse.Namespace, with_files: bool
) -> tuple[list[TaskRecord], dict[int, list[FileRecord]]]:
    from downloader.manager import DownloadManager

    async with DownloadManager(settings_for(args), autostart=False) as manager:
        tasks = await manager.list(args.state)
        files = {t.id: await manager.files(t.id) for t in tasks} if with_files else {}
    return tasks, files
