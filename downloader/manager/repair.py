"""Repairing a finished file that ``verify`` found damaged: its bad blocks (or, when only its
SHA-256 differs, all of it) are fetched again through the engine, checked like any download,
and the file takes its name back. The task stays completed; its history says what happened.

The damaged file is moved aside to its partial name while it is repaired: a file that fails
a check is not usable anyway, and the engine only ever writes partial files. If the repair
cannot finish, the file is put back as it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from pathlib import Path

from downloader.durable import rename_durably
from downloader.engine.download import FileDownload
from downloader.engine.partfile import partial_path
from downloader.engine.plan import repair as repaired_chunks
from downloader.errors import SpecError, TransferError
from downloader.manager.rows import spec_of
from downloader.manager.runner import RunContext, check_format
from downloader.sources import Resolution, SourceContext, source_for
from storage import FileRecord, FileState, IllegalTransitionError, TaskState


async def repair_file(
    ctx: RunContext,
    task_id: int,
    file_id: int,
    bad_blocks: Collection[int],
    token: str | None = None,
) -> FileRecord:
    """Fetch ``bad_blocks`` (offsets) of a completed task's file again, or the whole file
    when there are none to name; returns its record, completed again."""
    ledger = ctx.ledger
    task = await ledger.tasks.get(task_id)
    if task.state is not TaskState.COMPLETED:
        raise IllegalTransitionError(task_id, task.state, TaskState.COMPLETED)
    record = next((f for f in await ledger.files.of_task(task_id) if f.id == file_id), None)
    if record is None:
        raise SpecError(f"task {task_id} has no file {file_id}")
    dest, part = Path(record.local_path), partial_path(record)
    if not await asyncio.to_thread(dest.is_file):
        raise TransferError(
            f"{dest} is missing: there is nothing to repair (run the same 'get' again to fetch it)",
            url=record.url,
        )
    chunks = await ledger.files.chunks(record.id) if bad_blocks else []
    plan = repaired_chunks(chunks, set(bad_blocks), record.block_size) if chunks else []
    bad_blocks = bad_blocks if plan else ()
    # Credentials come from the source as for any run (a gated repo's token, ~/.netrc).
    source_ctx = SourceContext(ctx.settings, ctx.session, token)
    spec = spec_of(task)
    resolution = await source_for(task.provider).resolve(spec, Path(task.destination), source_ctx)
    if not plan:
        # The whole file again: the damaged one keeps its name until the new bytes have
        # passed every check, then gives way (it is this task's own).
        await ledger.tasks.note(task.id, f"repairing {record.relpath}: fetching all of it again")
        record = await ledger.files.replace_chunks(record.id, [], state=FileState.DOWNLOADING)
        done = await _fetch(ctx, record, resolution, overwrite=True)
    else:
        # Some blocks again: in place, in the partial file the engine writes.
        note = f"repairing {record.relpath}: fetching {len(bad_blocks)} block(s) again"
        await ledger.tasks.note(task.id, note)
        await asyncio.to_thread(rename_durably, dest, part)
        try:
            record = await ledger.files.replace_chunks(
                record.id, plan, state=FileState.DOWNLOADING, dirty=False, sha256=None
            )
            done = await _fetch(ctx, record, resolution, overwrite=False)
        except BaseException:
            await asyncio.shield(_put_back(ctx, record, part, dest))
            raise
    await ledger.tasks.note(task.id, f"repaired {record.relpath}")
    return done


async def _put_back(ctx: RunContext, record: FileRecord, part: Path, dest: Path) -> None:
    """A repair that could not finish leaves the file as it found it."""
    if await asyncio.to_thread(part.is_file) and not await asyncio.to_thread(dest.exists):
        await asyncio.to_thread(rename_durably, part, dest)
        await ctx.ledger.files.update(record.id, state=FileState.COMPLETED, dirty=False)


async def _fetch(
    ctx: RunContext, record: FileRecord, resolution: Resolution, *, overwrite: bool
) -> FileRecord:
    """Fetch what ``record``'s chunks still lack, checked like any download."""
    download = FileDownload(
        ctx.engine,
        record,
        ctx.ledger.journal(record, None),
        auth_headers=dict(resolution.auth_headers),
        overwrite=overwrite,
        check=check_format,
    )
    return await download.run()
