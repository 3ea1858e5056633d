"""Run one claimed task: resolve its files, download them, finish, and move its state.

The runner owns the task only while the ledger says it is ``downloading`` under this
process's lease. Every move it makes is a compare-and-set on that lease, so if another
process paused or cancelled the task meanwhile, the runner's late moves simply lose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from downloader.engine.context import EngineContext
from downloader.engine.download import FileDownload
from downloader.engine.progress import FileProgress, Phase
from downloader.engine.ratelimit import TokenBucket
from downloader.errors import ModelhaulError
from downloader.formats import inspect_files
from downloader.manager.bus import ProgressBus
from downloader.manager.leases import purge_parts, take_files_host
from downloader.manager.outages import through_outages
from downloader.manager.reuse import index_finished, reuse
from downloader.manager.rows import new_file, spec_of
from downloader.manager.taskview import FileView, file_views, task_progress
from downloader.manager.tunables import peers_for
from downloader.progress import DownloadProgress, DownloadStatus, SpeedMeter, status_of
from downloader.settings import Settings
from downloader.sources import PhaseUpdate, Resolution, Source, SourceContext, Update
from storage import (
    FileRecord,
    FileState,
    Lease,
    LeaseLostError,
    Ledger,
    LedgerUnavailableError,
    TaskNotFoundError,
    TaskRecord,
    TaskState,
    TransitionConflictError,
)

log = logging.getLogger(__name__)

REPORT_INTERVAL = 0.1  # at most ~10 progress reports per second per task


@dataclass(frozen=True)
class RunContext:
    """What the runners of one manager share: the ledger, the settings (sources read them)
    and what the engine is handed."""

    ledger: Ledger
    settings: Settings
    engine: EngineContext

    @property
    def session(self) -> aiohttp.ClientSession:
        """The one HTTP session of the process."""
        return self.engine.session


class TaskRunner:
    """Runs one task to completion, failure or a stop."""

    def __init__(
        self,
        task: TaskRecord,
        *,
        ctx: RunContext,
        source: Source,
        lease: Lease,
        bus: ProgressBus,
        token: str | None = None,
        credentials: Mapping[str, str] | None = None,
        resolution: Resolution | None = None,
    ) -> None:
        self.task = task
        self._credentials = dict(credentials or {})  # headers for the files' own hosts
        self._resolution = resolution  # what a preflight resolved for this run, if anything
        self._ctx = ctx
        self._source = source
        self._lease = lease
        self._bus = bus
        self._token = token
        self._files: dict[int, FileProgress] = {}
        self._records: list[FileRecord] = []
        self._speed = SpeedMeter()
        self._status = DownloadStatus.STARTING
        self._message = f"Starting {task.label}"
        self._last: tuple[object, ...] | None = None
        self._last_at = 0.0
        self._moved_to: TaskState | None = None  # where another party moved the task
        self._job: asyncio.Task[None] | None = None
        self._done_elsewhere = False  # another program (Ollama's daemon) did the transfer
        self.unrecorded: LedgerUnavailableError | None = None  # how it ended, unwritten

    # --- the run ----------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Run the task in a task of its own; returns it."""
        self._job = asyncio.create_task(self.run(), name=f"task {self.task.id}")
        return self._job

    def stop(self, moved_to: TaskState | None = None) -> None:
        """Stop the run: connections close, a last checkpoint is made, the run ends.
        ``moved_to``: the state another party (a pause, a cancel) moved the task to, whose
        word stands; None: this process is stopping, so the task goes back to the queue."""
        if moved_to is not None and self._moved_to is None:
            self._moved_to = moved_to
        if self._job is not None:
            self._job.cancel()

    async def stopped(self) -> None:
        """Until the run has ended (whichever way)."""
        if self._job is not None:
            await asyncio.gather(self._job, return_exceptions=True)

    async def run(self) -> None:
        """Drive the task; never raises except for cancellation."""
        reporter = asyncio.create_task(self._report_loop(), name=f"progress {self.task.id}")
        try:
            self._publish(force=True)
            await through_outages(self._download, self._outage, self._outage_over)
            # A compare-and-set: asking again after an outage is safe, and an answer lost
            # with a cut connection is read back (the task is then completed already).
            await through_outages(self._complete, self._outage, self._note_outage)
            self._status, self._message = DownloadStatus.COMPLETE, self._done_message()
        except asyncio.CancelledError:
            await self._stopped()
            raise
        except (ModelhaulError, OSError) as e:
            await self._fail(str(e))
        except Exception as e:  # a bug: still leave the task in a truthful state
            log.exception("task %s failed unexpectedly", self.task.id)
            await self._fail(f"internal error: {type(e).__name__}: {e}")
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            self._publish(force=True)

    async def _download(self) -> None:
        written_on = await take_files_host(self._ctx.ledger, self.task, self._lease)
        spec = spec_of(self.task)
        destination = Path(self.task.destination)
        ctx = SourceContext(self._ctx.settings, self._ctx.session, self._token)
        updates = await self._source.delegate(spec, ctx)
        if updates is not None:  # another program does the transfer: follow it
            async for update in updates:
                self._follow(update)
            self._done_elsewhere = True
            return
        # Resolved once per run: by whoever asked for it just now (a preflight), else here.
        # Kept for this runner's later attempts (after an outage of the ledger's database):
        # the source need not be asked again.
        resolution = self._resolution = self._resolution or await self._source.resolve(
            spec, destination, ctx
        )
        ledger = self._ctx.ledger
        # Only the pins, merged with what is stored now: our copy of the options is from the
        # claim, and a limit set since (``limit --task``) must not be written back over.
        if any(self.task.options.get(k) != v for k, v in resolution.pins.items()):
            await ledger.tasks.merge_options(self.task.id, dict(resolution.pins))
            self.task = await ledger.tasks.get(self.task.id)
        for folder in resolution.folders:
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        block = self._ctx.settings.block_size
        self._records = await ledger.files.add(
            self.task.id, [new_file(f, block) for f in resolution.files]
        )
        for r in self._records:
            self._files[r.id] = FileProgress(
                r.id,
                r.relpath,
                r.size,
                written=r.downloaded_bytes if r.size else 0,
                phase=Phase.DONE if r.state is FileState.COMPLETED else Phase.PENDING,
                on_phase=self._publish,
            )
        self._status = DownloadStatus.DOWNLOADING
        self._message = f"Downloading {self.task.label}"
        gate = asyncio.Semaphore(max(1, self._ctx.settings.max_files))

        async def one(record: FileRecord) -> FileRecord:
            async with gate:
                if await reuse(ledger, record, self._lease.owner) is not None:
                    record = await ledger.files.get(record.id)
                    self._files[record.id].done(record.size or 0)
                    return record
                record = await FileDownload(
                    self._ctx.engine,
                    record,
                    ledger.journal(record, self._lease.owner),
                    auth_headers={**resolution.auth_headers, **self._credentials},
                    headers=dict(self.task.options.get("extra_headers") or {}),
                    progress=self._files[record.id],
                    overwrite=bool(self.task.options.get("overwrite")),
                    check=check_format,
                    peers=peers_for(self.task.options, self._ctx.settings),
                    written_on=written_on,
                ).run()
                await index_finished(ledger, record, f"task {record.task_id}")
                return record

        # Largest first (the gate serves in this order): a big file has its connections from
        # the first second, not after every small file listed before it.
        order = sorted(self._records, key=lambda r: -(r.size or 0))
        jobs = [asyncio.create_task(one(r)) for r in order]
        try:
            for job in asyncio.as_completed(jobs):
                await job  # the first failure propagates; the rest are cancelled below
        finally:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
        self._records = await ledger.files.of_task(self.task.id)
        await self._check_formats()
        self._status, self._message = DownloadStatus.VERIFYING, "Finishing"
        await self._source.finish(spec, destination, resolution, ctx)

    async def _check_formats(self) -> None:
        """A GGUF or safetensors file is done only when its header parses and the model's
        shards are all there; what the headers say is kept in each file's ``meta``."""
        self._status, self._message = DownloadStatus.VERIFYING, "Checking model files"
        files = [(r.relpath, Path(r.local_path)) for r in self._records]
        summaries = await asyncio.to_thread(
            inspect_files, files, complete=self._source.folder_destination
        )
        changes = {
            r.id: {"meta": {**r.meta, "format": summaries[r.relpath]}}
            for r in self._records
            if r.relpath in summaries and r.meta.get("format") != summaries[r.relpath]
        }
        await self._ctx.ledger.files.update_many(changes, owner=self._lease.owner)

    # --- progress from a transfer another program does ----------------------------------

    def _follow(self, update: Update) -> None:
        """Show what the other program reports: a part (an Ollama layer), or a new phase."""
        if isinstance(update, PhaseUpdate):
            self._status, self._message = update.status, update.message
            self._publish(force=True)
            return
        part = self._files.get(update.name)
        if part is None:
            part = self._files[update.name] = FileProgress(
                len(self._files), update.name, update.total
            )
        part.fetched += max(0, update.completed - part.written)
        part.written = update.completed
        part.enter(Phase.DONE if update.completed >= update.total else Phase.DOWNLOADING)
        self._status, self._message = DownloadStatus.DOWNLOADING, f"pulling {update.name}"

    # --- endings ----------------------------------------------------------------------------

    async def _move(self, to: TaskState, reason: str) -> None:
        try:
            self.task = await self._ctx.ledger.tasks.transition(
                self.task.id,
                to,
                reason=reason,
                expect=TaskState.DOWNLOADING,
                if_owner=self._lease.owner,
                actor=self._lease.owner,
            )
        except TransitionConflictError as e:
            # Another process moved the task first (a pause or cancel): its word stands.
            log.info("task %s: %s", self.task.id, e)
            self.task = await self._ctx.ledger.tasks.get(self.task.id)
            self._moved_to = self.task.state

    async def _fail(self, error: str) -> None:
        try:
            await self._move(TaskState.FAILED, error)
        except LedgerUnavailableError as e:
            # The ledger itself cannot be written: the failure cannot be recorded either.
            # Say so once and stop; the task's lease lapses with this process, and what was
            # recorded (every durable chunk) is resumed by the next run.
            self.unrecorded = e
            message = error if error == str(e) else f"{error} (not recorded: {e})"
            self._status, self._message = DownloadStatus.ERROR, message
            return
        if self.task.state is TaskState.FAILED:
            self._status, self._message = DownloadStatus.ERROR, error
        else:
            self._status, self._message = status_of(self.task.state), error

    def _outage(self, error: LedgerUnavailableError, wait: float) -> None:
        log.warning("task %s: %s; going on in %g s", self.task.id, error, wait)
        self._message = f"The ledger's database is away ({error.problem}); going on in {wait:g} s"
        self._publish(force=True)

    async def _outage_over(self, error: LedgerUnavailableError) -> None:
        """Go on only while the task is still ours: another host may have taken it over
        meanwhile (our heartbeats failed too), and its ``.part`` is then not ours to write."""
        try:
            task = await self._ctx.ledger.tasks.get(self.task.id)
        except LedgerUnavailableError:  # still away: the next attempt meets it and says so
            return
        holder = task.lease.owner if task.lease is not None else None
        if task.state is not TaskState.DOWNLOADING or holder != self._lease.owner:
            raise LeaseLostError(self.task.id, self._lease.owner, holder)
        self._message = f"Downloading {self.task.label}"
        await self._note_outage(error)

    async def _note_outage(self, error: LedgerUnavailableError) -> None:
        with contextlib.suppress(LedgerUnavailableError):
            await self._ctx.ledger.tasks.note(
                self.task.id,
                f"the ledger's database was away ({error.problem}); going on from the "
                "recorded chunks",
                actor=self._lease.owner,
            )

    async def _stopped(self) -> None:
        """The run was cancelled: by another process's pause/cancel (already in the ledger),
        or by this process stopping: then the task goes back to the queue, so the next worker
        (or this one, restarted) continues it from its chunks."""
        if self._moved_to is None:
            try:
                await self._move(TaskState.PENDING, "interrupted: the process running it stopped")
            except LedgerUnavailableError as e:
                # Stopping must not fail: the lease lapses with this process instead.
                log.info("task %s: cannot requeue it: %s", self.task.id, e)
                self.unrecorded = e
                self._status, self._message = DownloadStatus.ERROR, str(e)
                return
        else:
            try:
                self.task = await self._ctx.ledger.tasks.get(self.task.id)
            except TaskNotFoundError:  # removed from the ledger while it ran
                self._status, self._message = DownloadStatus.CANCELLED, "Removed"
                return
        if self.task.state is TaskState.CANCELLED and self.task.options.get("purge"):
            await asyncio.to_thread(purge_parts, self._records or [])
        self._status = status_of(self.task.state)
        self._message = {
            TaskState.PAUSED: "Paused; resume to continue from here",
            TaskState.CANCELLED: "Cancelled",
            TaskState.PENDING: "Queued again: the process running it stopped",
        }.get(self.task.state, self.task.state.value)

    async def _complete(self) -> None:
        await self._move(TaskState.COMPLETED, "all files downloaded and verified")

    def _done_message(self) -> str:
        if self._done_elsewhere:
            return self._message  # the source's own last word, e.g. "Pulled … through …"
        return f"Downloaded {self.task.label} to {self.task.destination}"

    # --- progress ---------------------------------------------------------------------------

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL)
            self._publish()

    def file_views(self) -> list[FileView]:
        """Each file of the task and how far it is (for per-file progress bars)."""
        return file_views(self._files.values())

    @property
    def limiter(self) -> TokenBucket:
        """The bucket this run's bytes are taken from (its lane of the rate limit)."""
        return self._ctx.engine.limiter

    def snapshot(self) -> DownloadProgress:
        """The task's progress now."""
        files = list(self._files.values())
        self._speed.add(sum(f.fetched for f in files))
        return task_progress(files, self._status, self._message, self._speed.rate(), self.task)

    def _publish(self, *, force: bool = False) -> None:
        """Publish the snapshot if anything a user sees changed (or a second passed)."""
        progress = self.snapshot()
        key = (
            progress.status,
            progress.note,
            progress.downloaded_bytes,
            progress.files_completed,
            progress.current_file,
            progress.state,
        )
        now = time.monotonic()
        if force or key != self._last or now - self._last_at >= 1.0:
            self._last, self._last_at = key, now
            self._bus.publish(progress)


async def check_format(part: Path, record: FileRecord) -> None:
    """A model file's header must parse before the file takes its final name (blocking
    reads, in a thread): an HTML page named ``model.gguf`` never replaces anything."""
    await asyncio.to_thread(inspect_files, [(record.relpath, part)], complete=False)
