"""What each ``modelhaul`` command does. A command's heavier modules (the live display, the
checks before a download, verification) are imported when it runs, not by every command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from downloader.cli import exitcodes
from downloader.cli.options import cors_origins, settings_for
from downloader.cli.output import Output
from downloader.errors import ModelhaulError
from downloader.json_shapes import task_json
from downloader.progress import format_bytes
from downloader.specs import parse_spec
from storage import IllegalTransitionError, LedgerError, TaskState, TransitionConflictError

if TYPE_CHECKING:
    from downloader.manager import DownloadManager

Command = Callable[[argparse.Namespace, Output], Awaitable[int]]


async def get(args: argparse.Namespace, out: Output) -> int:
    """Download specs (``cli.getcmd``)."""
    from downloader.cli.getcmd import get as run_get

    return await run_get(args, out)


async def ls(args: argparse.Namespace, out: Output) -> int:
    """List tasks."""
    from downloader.cli.listing import list_tasks

    return await list_tasks(args, out)


async def show(args: argparse.Namespace, out: Output) -> int:
    """One task: its fields, files, chunks and history."""
    async with _manager(args, autostart=False) as manager:
        task = await manager.get(args.id)
        files = await manager.files(task.id)
        by_file = await manager.chunks(task.id)
        chunks = {f.relpath: by_file[f.id] for f in files}
        summary = {
            path: {
                "chunks": len(cs),
                "finished": sum(c.finished for c in cs),
                "durable_bytes": sum(c.done for c in cs),
            }
            for path, cs in chunks.items()
        }
        data = task_json(
            task,
            await manager.progress(task.id),
            files=files,
            events=await manager.history(task.id),
        )
        data["chunks"] = summary
    if out.json:
        out.data(data)
        return exitcodes.OK
    size = format_bytes(task.total_bytes) if task.total_bytes is not None else "?"
    out.say(f"[bold]task {task.id}[/bold] {task.label}")
    error = f" - {escape(task.error)}" if task.error else ""  # remote words: no markup
    out.say(f"  state     {task.state.value}{error}")
    percent = f" ({data['percent']}%)" if data["percent"] is not None else ""
    out.say(f"  progress  {format_bytes(task.downloaded_bytes)} of {size}{percent}")
    out.say(f"  where     {task.destination}")
    if task.files_host:  # with per-host destinations, the one machine that has them
        out.say(f"  host      {escape(task.files_host)} (its files are on this host's disk)")
    files_table = Table(box=None, header_style="bold", title="files", title_justify="left")
    for column in ("STATE", "SIZE", "CHUNKS", "SHA-256", "PATH"):
        files_table.add_column(column)
    for f in files:
        s = summary[f.relpath]
        files_table.add_row(
            f.state.value,
            format_bytes(f.size) if f.size is not None else "?",
            f"{s['finished']}/{s['chunks']}",
            (f.sha256 or f.expected_sha256 or "")[:16],
            f.relpath,
        )
    if files:
        out.console.print(files_table)
    history = Table(box=None, header_style="bold", title="history", title_justify="left")
    for column in ("WHEN", "FROM", "TO", "WHY"):
        history.add_column(column)
    for e in data["events"]:
        history.add_row(e["at"], e["from"] or "", e["to"], e["reason"])
    out.console.print(history)
    return exitcodes.OK


def _control(action: str) -> Command:
    async def run(args: argparse.Namespace, out: Output) -> int:
        foreground = action in ("resume", "retry") and not args.detach
        code, done, results = exitcodes.OK, [], []
        async with _manager(args, autostart=foreground) as manager:
            for task_id in args.ids:
                try:
                    if action == "cancel":
                        task = await manager.cancel(task_id, purge=args.purge)
                    elif action == "rm":
                        await manager.remove(task_id)
                        results.append({"id": task_id, "removed": True})
                        out.say(f"task {task_id}: removed (its files stay)")
                        continue
                    else:
                        rate = getattr(args, "task_rate", None)
                        tuning = {"rate_limit": rate} if rate is not None else {}
                        task = await getattr(manager, action)(task_id, **tuning)
                except IllegalTransitionError as e:
                    if action in ("resume", "retry") and e.current is TaskState.PENDING:
                        # Where resume would put it: not an error, but nobody may be running
                        # the queue (a detached get, or a get interrupted as it started).
                        results.append({"id": task_id, "state": e.current.value})
                        out.say(
                            f"task {task_id} is queued already: 'modelhaul worker' runs the "
                            "queue (or run the same 'modelhaul get' again to fetch it here)"
                        )
                        continue
                    out.error(str(e))
                    code = max(code, exitcodes.code_for(e))
                    continue
                except (TransitionConflictError, LedgerError) as e:
                    out.error(str(e))
                    code = max(code, exitcodes.code_for(e))
                    continue
                results.append({"id": task.id, "state": task.state.value})
                done.append(task)
                if not foreground:
                    out.say(f"task {task.id}: {task.state.value}")
            if foreground and done:
                from downloader.cli.follow import follow

                return max(code, await follow(manager, done, out))
        if out.json:
            out.data(results)
        return code

    return run


async def watch(args: argparse.Namespace, out: Output) -> int:
    """A live table of every task until Ctrl-C."""
    from downloader.cli.watch import watch_tasks

    async with _manager(args, autostart=False) as manager:
        with contextlib.suppress(asyncio.CancelledError):
            await _until_signal(watch_tasks(manager, out))
    return exitcodes.OK


async def worker(args: argparse.Namespace, out: Output) -> int:
    """Run queued tasks headless; SIGTERM or Ctrl-C put running tasks back in the queue."""
    from downloader.cli.display import line_for

    async with _manager(args) as manager:

        async def log() -> None:
            async for p in manager.watch():
                if p.task_id is not None and (p.status.is_final or out.lines):
                    out.plain(line_for(p.task_id, p)) if not out.quiet else None

        logger = asyncio.create_task(log()) if not out.quiet and not out.json else None
        try:
            await _until_signal(manager.run(once=args.once))
        finally:
            if logger is not None:
                logger.cancel()
    return exitcodes.OK


async def serve(args: argparse.Namespace, out: Output) -> int:
    """The server, until SIGTERM or Ctrl-C."""
    from downloader.server import serve as run_server
    from downloader.server.serve import bind_address, server_url

    settings = settings_for(args)
    ready = asyncio.Event()
    server = run_server(
        settings,
        host=args.host,
        port=args.port,
        token=args.token,
        peer_token=args.peer_token,
        cors_origins=cors_origins(args.cors_origin, os.environ),
        ready=ready,
    )
    job = asyncio.ensure_future(_until_signal(server))
    await asyncio.wait(
        [job, asyncio.ensure_future(ready.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    if ready.is_set():
        out.plain(f"modelhaul serving on {server_url(bind_address(args.host), args.port)}")
    await job
    return exitcodes.OK


async def verify(args: argparse.Namespace, out: Output) -> int:
    """Re-check digests on disk (and with ``--repair`` fetch what is bad again); exit 1 if
    anything still differs."""
    from downloader.verify import verify_task

    async with _manager(args, autostart=False) as manager:
        ids = args.ids or [t.id for t in await manager.list(TaskState.COMPLETED)]
        checks = []
        for task_id in ids:
            await manager.get(task_id)
            found = await verify_task(manager, task_id)
            broken = [c for c in found if c.repairable and c.file_id is not None]
            if args.repair and broken:
                for c in broken:
                    out.say(f"repairing task {c.task_id} {c.path}: {c.problem}")
                    try:
                        await manager.repair(task_id, c.file_id, c.bad_blocks)
                    except ModelhaulError as e:
                        out.error(f"task {c.task_id} {c.path}: cannot repair: {e}")
                found = await verify_task(manager, task_id)  # checked again, after
            checks += found
    if out.json:
        out.data([_check_json(c) for c in checks])
    for c in checks:
        if c.ok and c.problem:
            out.say(f"[yellow]?[/yellow]    task {c.task_id} {c.path}: {c.problem}")
        elif c.ok:
            checked = format_bytes(c.checked_bytes)
            out.say(f"[green]ok[/green]   task {c.task_id} {c.path} ({checked} checked)")
        else:
            hint = " (modelhaul verify --repair fetches it again)" if c.repairable else ""
            out.error(f"task {c.task_id} {c.path}: {c.problem}{hint}")
    if not checks:
        out.say("nothing to verify")
    return exitcodes.OK if all(c.ok for c in checks) else exitcodes.FAILED


def _check_json(check: Any) -> dict[str, Any]:
    data = {k: v for k, v in vars(check).items() if k not in ("bad_blocks", "file_id")}
    data["checked"] = check.checked_bytes > 0 or check.problem is None
    data["bad_blocks"] = len(check.bad_blocks)
    return data


async def limit(args: argparse.Namespace, out: Output) -> int:
    """Show or set the live bandwidth limit (``cli.limitcmd``)."""
    from downloader.cli.limitcmd import run_limit

    async with _manager(args, autostart=False) as manager:
        return await run_limit(manager, args, out)


async def workers(args: argparse.Namespace, out: Output) -> int:
    """The processes running downloads on this ledger (``cli.workerscmd``)."""
    from downloader.cli.workerscmd import run_workers

    return await run_workers(args, out)


async def mirror(args: argparse.Namespace, out: Output) -> int:
    """Download every entry of a manifest."""
    from downloader.cli.mirror import run_mirror

    return await run_mirror(args, out)


async def models(args: argparse.Namespace, out: Output) -> int:
    """The model registry."""
    from downloader import registry

    chosen = (
        [registry.info(args.alias)]
        if args.alias
        else registry.recommended(args.capability)
        if args.recommended
        else registry.models(args.provider, args.capability)
    )
    if out.json:
        out.data(chosen[0].to_dict() if args.alias else [m.to_dict() for m in chosen])
        return exitcodes.OK
    table = Table(box=None, header_style="bold")
    for column in ("ALIAS", "NAME", "PARAMS", "SIZE", "CONTEXT", "CAPABILITIES", "ALSO"):
        table.add_column(column)
    for m in chosen:
        also = " ".join(x for x in ("ollama" if m.ollama else "", "mlx" if m.mlx else "") if x)
        table.add_row(
            m.alias + (" *" if m.recommended else ""),
            m.name,
            m.parameters,
            format_bytes(m.size_bytes),
            f"{m.context_window:,}",
            ", ".join(c.value for c in m.capabilities),
            also,
        )
    out.console.print(table)
    if args.alias:
        m = chosen[0]
        out.say(f"get it with: modelhaul get {m.alias}   ({m.spec()})")
    else:
        out.say(
            "* recommended. Any alias works as a spec: modelhaul get llama3.2-1b, "
            "mlx://llama3.2-1b, ollama://llama3.2-1b"
        )
    return exitcodes.OK


async def cache(args: argparse.Namespace, out: Output) -> int:
    """Cache management."""
    from downloader.cli.cachecmd import run_cache

    return await run_cache(args, out)


async def peers(args: argparse.Namespace, out: Output) -> int:
    """Which peers answer and what they hold (``cli.peerscmd``)."""
    from downloader.cli.peerscmd import run_peers

    return await run_peers(args, out)


async def demo(args: argparse.Namespace, out: Output) -> int:
    """The offline demonstration."""
    from downloader.cli.demo import run_demo

    return await run_demo(args, out)


def _manager(args: argparse.Namespace, *, autostart: bool = True) -> DownloadManager:
    # Loaded when a command needs it: the manager brings the engine and aiohttp, which
    # 'ls' (storage.glance) does without.
    from downloader.manager import DownloadManager

    return DownloadManager(settings_for(args), autostart=autostart)


async def _until_signal(job: Awaitable[Any]) -> Any:
    """Run ``job`` until it ends or SIGTERM/SIGINT arrives (then cancel it cleanly). The
    handlers stay until the loop closes: a second Ctrl-C while the command cleans up (its
    tasks back in the queue, its session closed) is ignored instead of cutting that short."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(job)
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise
        return None


COMMANDS: dict[str, Command] = {
    "get": get,
    "ls": ls,
    "show": show,
    "pause": _control("pause"),
    "resume": _control("resume"),
    "retry": _control("retry"),
    "cancel": _control("cancel"),
    "rm": _control("rm"),
    "watch": watch,
    "worker": worker,
    "serve": serve,
    "verify": verify,
    "limit": limit,
    "workers": workers,
    "mirror": mirror,
    "models": models,
    "cache": cache,
    "peers": peers,
    "demo": demo,
}

__all__ = ["COMMANDS", "parse_spec"]
