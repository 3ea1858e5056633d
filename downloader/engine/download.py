"""Download one file, from wherever its journal says it stands to done: a file already in
place (``present``), many range requests (``ranges``) or one stream where the server has no
ranges (``stream``), each ending in the same checks and rename (``finish``). A remote file
that changes meanwhile is started over, a few times at most."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

from downloader.engine.context import EngineContext, FileCheck, FileRun
from downloader.engine.fetch import ProbeNeeded
from downloader.engine.http import Resource, request_timeout
from downloader.engine.journal import FileJournal
from downloader.engine.present import already_complete
from downloader.engine.progress import FileProgress
from downloader.engine.ranges import fetch_ranges
from downloader.engine.stream import stream_whole
from downloader.errors import RemoteChangedError
from downloader.peers import Peer
from storage import FileRecord

log = logging.getLogger(__name__)


class FileDownload:
    """One file of one task. Everything it learns and every byte it makes durable goes to
    ``journal``, the file's own record; ``progress`` is for whoever reports it.
    ``auth_headers`` (credentials) go only to the file's own host, never to one it is
    redirected to; ``headers`` go with every request. ``peers`` are asked first for a file
    whose SHA-256 is known, each with its own token only. ``written_on``: the host that
    wrote the recorded progress, when it is another one than this (its ``.part`` may not be
    reachable here, and a restart says so)."""

    def __init__(
        self,
        ctx: EngineContext,
        file: FileRecord,
        journal: FileJournal,
        *,
        auth_headers: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        progress: FileProgress | None = None,
        overwrite: bool = False,
        check: FileCheck | None = None,
        peers: Sequence[Peer] = (),
        written_on: str | None = None,
    ) -> None:
        def resource(url: str, auth: dict[str, str] | None = None) -> Resource:
            # Credentials were given for the file's own host: a mirror elsewhere gets none.
            if auth is None and _origin(url) == _origin(file.url):
                auth = auth_headers
            return Resource(
                ctx.session,
                url,
                auth_headers=auth,
                headers=headers,
                retry=ctx.config.retry,
                timeout=request_timeout(ctx.config),
            )

        sources = {url: resource(url) for url in (file.url, *mirror_urls(file))}
        preferred = {u for u in file.meta.get("preferred") or [] if u in sources}
        if file.expected_sha256:
            for peer in peers:
                url = peer.blob_url(file.expected_sha256)
                sources.setdefault(url, resource(url, peer.auth_headers))
                preferred.add(url)
        # The URL whose validators the record holds goes first (a mirror, when the file's
        # own URL did not answer at the start).
        first = file.meta.get("validated_by")
        first = first if first in sources else file.url
        self._run = FileRun(
            ctx,
            file,
            journal,
            sources.pop(first),
            progress or FileProgress(file.id, file.relpath, file.size),
            overwrite=overwrite,
            check=check,
            mirrors=tuple(sources.values()),
            preferred=frozenset(preferred),
            written_on=written_on,
        )

    async def run(self) -> FileRecord:
        """Download (or confirm) the file; returns its completed record.

        Cancellation (pause, cancel) stops the connections, makes a last checkpoint and
        re-raises; any other error does the same and propagates typed.
        """
        run = self._run
        if await already_complete(run):
            return run.file
        restarts = 0
        unprobed = _probe_unneeded(run)
        while True:
            try:
                if unprobed:
                    unprobed = False  # once: any later attempt probes
                    return await fetch_ranges(run)
                return await self._attempt()
            except ProbeNeeded as e:
                # Not a restart: nothing was written, and the remote need not have changed.
                log.info("task %s: %s: %s; probing it", run.file.task_id, run.file.relpath, e)
                await self._forget()
            except RemoteChangedError as e:
                restarts += 1
                if not e.can_restart or restarts > run.config.max_restarts:
                    raise
                await self._start_over(f"{e}; starting this file over")

    async def _attempt(self) -> FileRecord:
        run = self._run
        # Without ranges every run starts from zero anyway: ask again whether there are some
        # now (the "no" may have been one proxy's, one time).
        if not run.file.accept_ranges:
            known_size = run.file.size
            await run.probe()
            if run.file.expected_sha256 and known_size is not None and run.file.size != known_size:
                raise _doomed(run.file, known_size)
        if not run.file.accept_ranges or run.file.size is None:
            return await stream_whole(run)
        return await fetch_ranges(run)

    async def _start_over(self, why: str) -> None:
        """The remote file changed: forget its validators and progress (keeping the size a
        published digest is for), and say so in the task's history."""
        log.warning("task %s: %s", self._run.file.task_id, why)
        await self._run.journal.note(why)
        await self._forget()

    async def _forget(self) -> None:
        """Drop the file's validators and progress, keeping the size a published digest is
        for: the next attempt probes it afresh."""
        run = self._run
        await run.replace(
            [],
            etag=None,
            last_modified=None,
            accept_ranges=None,
            size=run.file.size if run.file.expected_sha256 else None,
            part_mtime_ns=None,
            part_size=None,
        )
        run.progress.written = 0


def _probe_unneeded(run: FileRun) -> bool:
    """Whether the file's first range request can stand in for its probe: a small file
    (one connection's share) whose size and SHA-256 its source published, nothing of it
    written yet, and no other URL to weigh. That request must be answered 206 with the
    published size, and its validators then hold for the file's later requests; any other
    answer (``ProbeNeeded``) has the file probed, as if it had been from the start. The
    validators are not recorded: a resume after a stop probes as ever, and the digest
    checks every byte. Small files are each a round trip faster: a third fewer requests."""
    f = run.file
    return (
        f.accept_ranges is None
        and f.size is not None
        and 0 < f.size <= run.config.min_chunk
        and f.expected_sha256 is not None
        and f.downloaded_bytes == 0
        and not run.mirrors
    )


def mirror_urls(file: FileRecord) -> list[str]:
    """The file's other URLs (its source's mirrors), as recorded with it."""
    urls = file.meta.get("mirrors") or []
    return [u for u in urls if isinstance(u, str) and u != file.url]


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _doomed(file: FileRecord, promised: int) -> RemoteChangedError:
    return RemoteChangedError(
        file.url,
        f"its size is now {file.size}, but the published SHA-256 is for {promised} bytes, so "
        "its bytes can never match it",
        can_restart=False,
    )
