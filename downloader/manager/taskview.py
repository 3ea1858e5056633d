"""What a running task looks like from outside: its progress report, summed from its files'
live counters, and each file as a progress bar shows it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from downloader.engine.progress import FileProgress, Phase
from downloader.progress import DownloadProgress, DownloadStatus, report
from storage import TaskRecord


@dataclass(frozen=True, slots=True)
class FileView:
    """One file of a running task, as a progress bar shows it."""

    path: str
    written: int
    size: int | None
    phase: str


def file_views(files: Iterable[FileProgress]) -> list[FileView]:
    """Each file and how far it is (for per-file progress bars)."""
    return [FileView(f.relpath, f.written, f.size, f.phase.value) for f in files]


def task_progress(
    files: Sequence[FileProgress],
    status: DownloadStatus,
    message: str,
    speed: float,
    task: TaskRecord,
) -> DownloadProgress:
    """The task's progress from its files now: bytes and files done, the file being worked
    on, and "verifying" once every file still busy is being verified."""
    sizes = [f.size for f in files]
    total = sum(s for s in sizes if s is not None) if files and None not in sizes else None
    done = sum(f.written if f.size is None else min(f.written, f.size) for f in files)
    if status is DownloadStatus.DOWNLOADING and files:
        busy = [f for f in files if f.phase is not Phase.DONE]
        if all(f.phase is Phase.VERIFYING for f in busy):  # (or none left: finishing)
            status = DownloadStatus.VERIFYING
    current = next(
        (f.relpath for f in files if f.phase in (Phase.DOWNLOADING, Phase.VERIFYING)),
        None,
    )
    if status is DownloadStatus.VERIFYING:
        message = f"Verifying {current}" if current else "Verifying"
    notes = [f"{f.relpath}: {f.note}" for f in files if f.note]
    return report(
        status,
        message,
        done=done,
        total=total,
        speed=speed,
        current_file=current,
        files_completed=sum(f.phase is Phase.DONE for f in files),
        total_files=len(files),
        task_id=task.id,
        state=task.state,
        note="; ".join(notes) if notes and not status.is_final else None,
    )
