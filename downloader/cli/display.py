"""Live progress in a terminal (one bar per task, one per file in flight) and plain lines
when stdout is not a terminal."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from rich.progress import BarColumn, Progress, TaskID, TextColumn

from downloader.cli.output import Output
from downloader.manager import DownloadManager
from downloader.progress import DownloadProgress, format_bytes, format_eta, format_speed
from storage import TaskState

TICK = 0.2
LINE_EVERY = 2.0  # seconds between plain lines whose numbers alone changed
# rich draws from its own thread, so a bar needs every field from the moment it exists.
BLANK = {"percent": "", "bytes": "", "speed": "", "eta": ""}
MANY = 8  # above this many tasks, only the running ones get a bar of their own


def _bytes(done: int | None, total: int | None) -> str:
    if done is None:
        return ""
    return f"{format_bytes(done)} / {format_bytes(total) if total is not None else '?'}"


class Display:
    """Draws the progress of some tasks until told to stop."""

    def __init__(self, manager: DownloadManager, task_ids: Sequence[int], out: Output) -> None:
        self._manager = manager
        self._ids = list(task_ids)
        self._out = out
        self._latest: dict[int, DownloadProgress] = {}
        self._printed: dict[int, tuple[object, str, float]] = {}

    async def run(self, until: asyncio.Event) -> None:
        """Follow the tasks until ``until`` is set."""
        if self._out.live:
            await self._live(until)
        elif self._out.lines:
            await self._lines(until)
        else:
            await until.wait()

    async def _poll(self) -> None:
        for task_id in self._ids:
            self._latest[task_id] = await self._manager.progress(task_id)

    # --- a terminal -------------------------------------------------------------------------

    async def _live(self, until: asyncio.Event) -> None:
        columns = (
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=None),
            TextColumn("{task.fields[percent]:>6}"),
            TextColumn("{task.fields[bytes]}"),
            TextColumn("{task.fields[speed]}"),
            TextColumn("{task.fields[eta]}"),
        )
        bars: dict[object, TaskID] = {}
        settled: set[int] = set()  # completed tasks whose file bars say so
        with Progress(*columns, console=self._out.console, transient=False, expand=True) as view:
            while True:
                await self._poll()
                if len(self._ids) > 1:
                    self._draw_overall(view, bars)
                for task_id, p in self._latest.items():
                    self._draw_task(view, bars, task_id, p)
                    if p.state is TaskState.COMPLETED and task_id not in settled:
                        await self._complete_files(view, bars, task_id)
                        settled.add(task_id)
                if until.is_set():
                    break
                await _tick(until)

    def _draw_overall(self, view: Progress, bars: dict[object, TaskID]) -> None:
        reports = list(self._latest.values())
        done = sum(p.downloaded_bytes or 0 for p in reports)
        total = sum(p.total_bytes or 0 for p in reports)
        finished = sum(p.state is TaskState.COMPLETED for p in reports)
        speed = sum(p.bytes_per_second for p in reports if p.state is TaskState.DOWNLOADING)
        eta = (total - done) / speed if speed > 0 and total else None
        label = f"all · {finished}/{len(reports)} tasks"
        fields = {
            "percent": f"{100 * done / total:.1f}%" if total else "",
            "bytes": _bytes(done, total or None),
            "speed": format_speed(speed) or "",
            "eta": f"ETA {format_eta(eta)}" if eta is not None else "",
        }
        if "all" not in bars:
            bars["all"] = view.add_task(label, total=100, **fields)
        view.update(
            bars["all"], description=label, completed=100 * done / total if total else 0, **fields
        )

    def _draw_task(
        self, view: Progress, bars: dict[object, TaskID], task_id: int, p: DownloadProgress
    ) -> None:
        files = f" · {p.files_completed}/{p.total_files} files" if p.total_files > 1 else ""
        label = f"#{task_id} {p.state.value if p.state else ''}{files}"
        running = p.state is TaskState.DOWNLOADING
        fields = {
            "percent": f"{p.percent:.1f}%" if p.percent is not None else "",
            "bytes": _bytes(p.downloaded_bytes, p.total_bytes),
            "speed": p.formatted_speed or "",
            "eta": p.note or (f"ETA {p.formatted_eta}" if p.formatted_eta and running else ""),
        }
        key = ("task", task_id)
        shown = len(self._ids) <= MANY or p.state is TaskState.DOWNLOADING
        if key not in bars:
            if not shown:
                return
            bars[key] = view.add_task(label, total=100, **fields)
        view.update(bars[key], description=label, completed=p.percent or 0, visible=shown, **fields)
        few = p.total_files <= MANY  # a few files keep their bars once done
        for f in self._manager.file_views(task_id):
            fkey = ("file", task_id, f.path)
            active = f.phase in ("downloading", "verifying", "checking", "probing")
            if fkey not in bars:
                if not active:
                    continue
                bars[fkey] = view.add_task(f"  {f.path}", total=f.size or 1, **BLANK)
            view.update(
                bars[fkey],
                total=f.size or 1,
                completed=min(f.written, f.size or f.written),
                visible=active or (few and f.phase == "done"),
                percent=f"{100 * f.written / f.size:.1f}%" if f.size else "",
                bytes=_bytes(f.written, f.size),
                speed="",
                eta=f.phase if f.phase not in ("downloading", "done") else "",
            )

    async def _complete_files(
        self, view: Progress, bars: dict[object, TaskID], task_id: int
    ) -> None:
        """Every file of a completed task at 100 %: its runner is gone, and its file bars
        would stay where its last report left them (95-99 %). Past ``MANY`` files the
        task's own bar says it all, and the file bars go."""
        files = await self._manager.files(task_id)
        few = len(files) <= MANY
        for f in files:
            fkey = ("file", task_id, f.relpath)
            size = f.size or 0
            if fkey not in bars:
                if not few:
                    continue
                bars[fkey] = view.add_task(f"  {f.relpath}", total=size or 1, **BLANK)
            view.update(
                bars[fkey],
                total=size or 1,
                completed=size or 1,
                visible=few,
                percent="100.0%",
                bytes=_bytes(size, size),
                speed="",
                eta="",
            )

    # --- a pipe or a log --------------------------------------------------------------------

    async def _lines(self, until: asyncio.Event) -> None:
        while True:
            await self._poll()
            now = time.monotonic()
            for task_id, p in self._latest.items():
                line = line_for(task_id, p)
                key = (p.status, p.files_completed, p.note)
                before, text, at = self._printed.get(task_id, (None, None, 0.0))
                # A line only when it says something new: at once when the state, the
                # files done or the note change, else when the numbers moved, at most
                # every few seconds (a log, not a film).
                if line != text and (key != before or now - at >= LINE_EVERY):
                    self._printed[task_id] = (key, line, now)
                    self._out.plain(line)
            if until.is_set():
                return
            await _tick(until)


def line_for(task_id: int, p: DownloadProgress) -> str:
    """``task 7: downloading 45.2% 1.2 GB / 2.6 GB 12.5 MB/s ETA 2m 30s (3/10 files)``"""
    # The ledger's word for the state (as 'ls' shows it), except while checking digests.
    verifying = p.status.value == "verifying" or p.state is None
    word = p.status.value if verifying else p.state.value
    if p.status.value == "error":  # failed, even where the ledger could not be told so
        word = "failed"
    parts = [f"task {task_id}: {word}"]
    if p.percent is not None:
        parts.append(f"{p.percent:.1f}%")
    if p.downloaded_bytes is not None:
        parts.append(_bytes(p.downloaded_bytes, p.total_bytes))
    if p.formatted_speed:
        parts.append(p.formatted_speed)
    if p.formatted_eta and p.state is TaskState.DOWNLOADING:
        parts.append(f"ETA {p.formatted_eta}")
    if p.total_files > 1:
        parts.append(f"({p.files_completed}/{p.total_files} files)")
    if p.status.value == "error":
        parts.append(f"- {p.message}")
    elif p.note:
        parts.append(f"- {p.note}")
    return " ".join(parts)


async def _tick(until: asyncio.Event) -> None:
    try:
        async with asyncio.timeout(TICK):
            await until.wait()
    except TimeoutError:
        pass
