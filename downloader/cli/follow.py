"""Run tasks in the foreground with live progress: ``get``, and ``resume``/``retry``.

Ctrl-C pauses them cleanly and says how to go on; the exit code says how they ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from rich.markup import escape

from downloader.cli import exitcodes
from downloader.cli.display import Display
from downloader.cli.output import Output
from downloader.json_shapes import ollama_name_of, task_json, usable_paths
from downloader.manager import DownloadManager, Task
from downloader.progress import format_bytes
from storage import (
    FileRecord,
    IllegalTransitionError,
    TaskNotFoundError,
    TaskState,
    TransitionConflictError,
)

RUNNABLE = frozenset({TaskState.PENDING, TaskState.DOWNLOADING})  # what a pause stops
PAUSE_TRIES = 100  # 5 s of lost races: more would mean the ledger is stuck


async def follow(manager: DownloadManager, tasks: Sequence[Task], out: Output) -> int:
    """Wait for ``tasks`` with progress and report how they ended; on Ctrl-C pause them.
    Returns the exit code."""
    finals = await wait_with_progress(manager, tasks, out)
    if finals is None:
        return exitcodes.INTERRUPTED
    return await report(manager, finals, out)


async def wait_with_progress(
    manager: DownloadManager, tasks: Sequence[Task], out: Output
) -> list[Task] | None:
    """Wait for ``tasks`` (this manager runs them, or another process does) while showing
    their progress. Returns them as they ended, or None after Ctrl-C paused them.

    Ctrl-C arrives as the cancellation of the command (``cli.main`` turns the signal into
    one): the tasks are paused, each until the ledger says it is at rest, and one line per
    task says how to go on."""
    ids = [t.id for t in tasks]
    done = asyncio.Event()
    display = asyncio.create_task(Display(manager, ids, out).run(done))
    waiters = [asyncio.create_task(manager.wait(i)) for i in ids]
    interrupted = False
    try:
        # Until every task ends, or one ends in a way the ledger could not record.
        await asyncio.wait(waiters, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:
        current = asyncio.current_task()
        assert current is not None
        current.uncancel()  # handled: what follows must run to the end
        interrupted = True
    for waiter in waiters:
        waiter.cancel()
    await asyncio.wait(waiters)
    # Every outcome is read, so that asyncio has nothing to complain about later.
    errors = [w.exception() for w in waiters if not w.cancelled()]
    unrecorded = next((e for e in errors if e is not None), None)
    if unrecorded is not None and not interrupted:
        # A task ended in a way the ledger could not record (its disk is full): that is
        # the one thing to say, and the ledger's state would only contradict it.
        done.set()
        await display
        raise unrecorded
    if interrupted:
        await _pause(manager, ids)
    done.set()
    await display
    finals = [await manager.get(i) for i in ids]
    if not interrupted:
        return finals
    paused = [t for t in finals if t.state is TaskState.PAUSED]
    if not paused:
        return finals  # all ended before the pause could stop them: said as usual
    for t in paused[:5]:
        out.error(
            f"paused task {t.id} at {format_bytes(t.downloaded_bytes)}"
            f"{' of ' + format_bytes(t.total_bytes) if t.total_bytes else ''}; "
            f"run the same command again, or 'modelhaul resume {t.id}', to continue"
        )
    if len(paused) > 5:
        out.error(f"paused {len(paused) - 5} more; run the same command again to continue")
    return None


async def _pause(manager: DownloadManager, ids: Sequence[int]) -> None:
    """Pause each task that is still queued or running, until the ledger says it stopped. A
    pause can lose a race (the scheduler claims the task as it is paused): it is tried again,
    since a task left pending would wait for a worker nobody started."""
    for task_id in ids:
        try:
            for _ in range(PAUSE_TRIES):
                with contextlib.suppress(TransitionConflictError, IllegalTransitionError):
                    await manager.pause(task_id)  # (illegal: it has nothing to pause)
                if (await manager.get(task_id)).state not in RUNNABLE:
                    break
                await asyncio.sleep(0.05)
        except TaskNotFoundError:
            continue  # removed meanwhile


async def report(manager: DownloadManager, finals: Sequence[Task], out: Output) -> int:
    """Print how the tasks ended, and for each completed one the files a program can open
    (``paths`` in each task's JSON with ``--json``, which is ``show --json``'s shape); the
    exit code."""
    files = {t.id: await manager.files(t.id) for t in finals}
    if out.json:
        items = [task_json(t, await manager.progress(t.id), files=files[t.id]) for t in finals]
        out.data(items[0] if len(items) == 1 else items)
    for t in finals:
        if t.state is TaskState.COMPLETED:
            for line in _done_lines(t, files[t.id]):
                out.say(line)
        elif t.state is TaskState.FAILED:
            out.error(f"task {t.id} failed: {t.error}")
        elif t.state is TaskState.PAUSED:
            out.error(
                f"task {t.id} was paused (by 'modelhaul pause' or another client) at "
                f"{format_bytes(t.downloaded_bytes)}; run the same command again, or "
                f"'modelhaul resume {t.id}', to continue"
            )
        else:
            out.error(f"task {t.id} is {t.state.value}")
    states = {t.state for t in finals}
    if states == {TaskState.COMPLETED}:
        return exitcodes.OK
    if states <= {TaskState.COMPLETED, TaskState.PAUSED}:
        return exitcodes.INTERRUPTED  # paused from elsewhere: resumable, like Ctrl-C
    return exitcodes.FAILED


def _done_lines(task: Task, files: Sequence[FileRecord]) -> list[str]:
    """A completed task: its label, then where to find it. One file: ``→ path``; several:
    a path a line; an Ollama model: the name ``ollama run`` takes, then its weights blob; a
    task with no file of its own (a pull through the Ollama daemon): its destination."""
    head = f"[green]✓[/green] task {task.id}: {escape(task.label)}"
    paths = [escape(p) for p in usable_paths(task, files)]
    name = ollama_name_of(task)
    if name is not None:
        return [
            f"{head} → {escape(name)} ('ollama run {escape(name)}')",
            *(f"  {p}" for p in paths),
        ]
    if len(paths) == 1:
        return [f"{head} → {paths[0]}"]
    if not paths:
        return [f"{head} → {escape(task.destination)}"]
    return [head, *(f"  {p}" for p in paths)]
