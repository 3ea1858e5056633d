"""Bytes already on this machine: a file whose SHA-256 the source publishes is taken from
the content index (hard-linked, reflinked or copied, then its digest checked) instead of
fetched; and every finished file with a known digest goes into that index.

An index entry is a claim from the past: the file it names is checked again (size, then
the SHA-256 of what was linked or copied) and an entry that no longer holds is dropped. A
name that already exists is never touched here: what is under the final name is the
engine's to judge (a user's file is kept), and so is a partial download to resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from downloader.durable import link_or_copy, sha256_of
from downloader.engine.partfile import partial_path
from storage import FileRecord, FileState, Ledger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reused:
    """A file placed from one already here: where from and how (``hard link``, …)."""

    source: str
    how: str


async def index_finished(ledger: Ledger, record: FileRecord, origin: str) -> None:
    """Record a completed file whose SHA-256 is known (taken or published and checked)."""
    sha = record.sha256 or (
        record.expected_sha256 if record.meta.get("content_addressed") else None
    )
    if record.state is not FileState.COMPLETED or not sha:
        return
    try:
        st = await asyncio.to_thread(os.stat, record.local_path)
    except OSError:
        return
    await ledger.contents.add(record.local_path, sha, st.st_size, st.st_mtime_ns, origin)


async def reuse(ledger: Ledger, record: FileRecord, owner: str | None) -> Reused | None:
    """Place ``record``'s bytes from an indexed file holding its published digest, and
    record it completed; None when there is none (or the final name or a partial is there
    already). Stale entries met on the way are dropped, with a note in the history."""
    sha, size = record.expected_sha256, record.size
    if not sha or size is None or record.state is FileState.COMPLETED:
        return None
    dest = Path(record.local_path)
    if await asyncio.to_thread(_taken, dest, partial_path(record)):
        return None
    for entry in await ledger.contents.find(sha):
        if entry.path == record.local_path:
            continue
        src = Path(entry.path)
        why = await asyncio.to_thread(_still_there, src, size)
        if why is None:
            how = await asyncio.to_thread(_place, src, dest, sha)
            if isinstance(how, str):
                await _record(ledger, record, owner, entry.path, how)
                return Reused(entry.path, how)
            if not how.stale:
                continue  # the entry may well be right: keep it for another time
            why = how.why
        await ledger.contents.drop(entry.path)
        await ledger.tasks.note(
            record.task_id, f"{record.relpath}: not reusing {entry.path}: {why}", actor=owner
        )
    return None


@dataclass(frozen=True)
class _Refused:
    why: str
    stale: bool = True  # the entry no longer holds (else: only this placing failed)


def _taken(dest: Path, part: Path) -> bool:
    return os.path.lexists(dest) or os.path.lexists(part)


def _still_there(src: Path, size: int) -> str | None:
    """None when ``src`` is a regular file of ``size`` bytes, else why not."""
    try:
        st = src.stat()
    except OSError as e:
        return f"it is gone ({e.strerror})"
    if not src.is_file():
        return "it is not a regular file"
    if st.st_size != size:
        return f"it has {st.st_size} bytes, not {size}"
    return None


def _place(src: Path, dest: Path, sha: str) -> str | _Refused:
    """Link or copy ``src`` beside ``dest``, check the digest of what is there, and give it
    the final name only if nothing came to be under it meanwhile (``link`` never replaces).
    Blocking."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.with_name(f".{dest.name}.reuse-{os.getpid()}")
    staging.unlink(missing_ok=True)
    try:
        how = link_or_copy(src, staging)
        got = sha256_of(staging)
        if got != sha:
            return _Refused(f"its SHA-256 is now {got}")
        try:
            os.link(staging, dest)
        except FileExistsError:
            return _Refused(f"{dest} came to be there meanwhile", stale=False)
        return how
    except OSError as e:
        return _Refused(f"cannot place it: {e.strerror or e}", stale=False)
    finally:
        with contextlib.suppress(OSError):
            staging.unlink()


async def _record(
    ledger: Ledger, record: FileRecord, owner: str | None, source: str, how: str
) -> None:
    st = await asyncio.to_thread(os.stat, record.local_path)
    await ledger.files.update(
        record.id,
        owner=owner,
        state=FileState.COMPLETED,
        sha256=record.expected_sha256,
        size=st.st_size,
        downloaded_bytes=st.st_size,
        dirty=False,
        error=None,
        meta={**record.meta, "reused_from": source, "reused_by": how},
    )
    await ledger.tasks.note(
        record.task_id,
        f"{record.relpath}: reused {source} ({how}), SHA-256 checked; nothing downloaded",
        actor=owner,
    )
    await ledger.contents.add(
        record.local_path,
        record.expected_sha256 or "",
        st.st_size,
        st.st_mtime_ns,
        f"task {record.task_id}",
    )
