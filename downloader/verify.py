"""Re-check what is on disk against what the ledger recorded: every block's XXH3 and each
file's SHA-256 (the published one, or the one computed when it was downloaded)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from downloader.durable import sha256_of
from downloader.engine.partfile import bad_block_offsets, partial_path
from downloader.errors import FormatError
from downloader.formats import inspect_files
from downloader.sources import source_for
from storage import ChunkRecord, FileRecord, FileState, TaskRecord


@dataclass(frozen=True)
class FileCheck:
    """The verdict on one file. ``ok``: nothing wrong was found; ``checked_bytes`` 0 with
    ``ok`` means nothing could be checked (no digest was ever recorded for it: ``problem``
    says so). ``file_id`` and ``bad_blocks`` (offsets) say what a repair fetches again;
    ``repairable``: a finished file whose bytes are wrong (not missing or unreadable)."""

    task_id: int
    path: str
    local_path: str
    ok: bool
    checked_bytes: int
    problem: str | None = None
    file_id: int | None = None
    bad_blocks: tuple[int, ...] = ()
    repairable: bool = False


class TaskReader(Protocol):
    """Where a task's records come from (a ``DownloadManager`` is one)."""

    async def get(self, task_id: int) -> TaskRecord: ...

    async def files(self, task_id: int) -> list[FileRecord]: ...

    async def chunks(self, task_id: int) -> dict[int, list[ChunkRecord]]: ...


async def verify_task(reader: TaskReader, task_id: int) -> list[FileCheck]:
    """Check every file of one task (blocking reads run in a thread): its blocks, its
    SHA-256, its header if it is a model file, and the model's shards together."""
    task = await reader.get(task_id)
    files = await reader.files(task_id)
    chunks_of = await reader.chunks(task_id)
    checks = []
    for f in files:
        checks.append(await asyncio.to_thread(_check, f, chunks_of.get(f.id, [])))
    if checks and all(c.ok for c in checks) and all(f.state is FileState.COMPLETED for f in files):
        complete = source_for(task.provider).folder_destination
        pairs = [(f.relpath, Path(f.local_path)) for f in files]
        try:
            await asyncio.to_thread(inspect_files, pairs, complete=complete)
        except FormatError as e:
            checks.append(FileCheck(task_id, "(model)", task.destination, False, 0, str(e)))
    return checks


def _check(f: FileRecord, chunks: list[ChunkRecord]) -> FileCheck:
    final = Path(f.local_path)
    partial = partial_path(f)
    if f.state is FileState.COMPLETED:
        target = final
    elif partial.exists():
        target = partial  # a download under way: check what it has recorded so far
    elif final.exists():
        target = final
    else:
        return FileCheck(f.task_id, f.relpath, f.local_path, False, 0, "missing on disk")
    try:
        fd = os.open(target, os.O_RDONLY)
    except OSError as e:
        return FileCheck(f.task_id, f.relpath, str(target), False, 0, f"cannot read: {e.strerror}")
    try:
        size = os.fstat(fd).st_size
        if target == final and f.size is not None and size != f.size:
            # Wrong bytes, no block to name: a repair fetches the whole file again.
            problem = f"{size} bytes, not {f.size}"
            completed = f.state is FileState.COMPLETED
            return FileCheck(
                f.task_id, f.relpath, str(target), False, 0, problem, f.id, (), completed
            )
        checked, bad = 0, []
        for c in chunks:
            if c.done:
                bad += bad_block_offsets(fd, c.start, c.done, f.block_size, c.xxh3)
                checked += c.done
        finished = target == final and f.state is FileState.COMPLETED
        if bad:
            return FileCheck(
                f.task_id,
                f.relpath,
                str(target),
                False,
                checked,
                f"{len(bad)} block(s) differ from their XXH3 digests (first at byte {min(bad)})",
                f.id,
                tuple(bad),
                finished,
            )
        want = f.expected_sha256 or f.sha256
        if target == final and want:
            sha = sha256_of(target)
            checked = size
            if sha != want:
                problem = f"SHA-256 is {sha}, expected {want}"
                return FileCheck(
                    f.task_id, f.relpath, str(target), False, checked, problem, f.id, (), finished
                )
        if not checked and size:
            # Found in place, never downloaded here: no digest to hold it to.
            problem = "not checked: no digest was recorded for it"
            return FileCheck(f.task_id, f.relpath, str(target), True, 0, problem, f.id)
        return FileCheck(f.task_id, f.relpath, str(target), True, checked, None, f.id)
    finally:
        os.close(fd)
