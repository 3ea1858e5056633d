"""``GET /api/v1/blobs/sha256/{hex}`` (and ``HEAD``): a finished file of this machine, found
by its SHA-256 in the ledger's content index, for peers (other modelhaul processes started
with ``--peer``) to take bytes from, with ranges.

Only what the index vouches for is served: a regular file (not a link) whose size and
mtime are still those it had when indexed. Anything else is a stale entry: skipped and
dropped, so a file changed, replaced or half-rewritten since is never offered under a digest
it may no longer have. Partial downloads are never in the index. The peer checks the
digest anyway (peers are untrusted both ways); this keeps an honest server honest.

No header or error names a path: the digest is the file's only name here.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import stat
from dataclasses import dataclass
from typing import BinaryIO

from aiohttp import hdrs, web

from downloader.peers import BLOB_ROUTE
from downloader.server.byteranges import RangeNotSatisfiable, Span, requested_span
from downloader.server.context import MANAGER
from downloader.server.errors import RequestError, error_response
from storage import Ledger
from storage.contents import ContentRecord

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
_HEX = re.compile(r"[0-9a-f]{64}")
# What an open fails with when the entry no longer names its file (as opposed to a passing
# trouble, such as too many open files, after which the entry may well be right).
_GONE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})


@dataclass(frozen=True, slots=True)
class _Opened:
    file: BinaryIO
    size: int


@routes.get(f"{BLOB_ROUTE}{{digest}}")
async def blob(request: web.Request) -> web.StreamResponse:
    """The file whose SHA-256 is ``{digest}``: 200 whole, 206 for one range, 416 for a range
    it cannot serve, 404 when no fresh file here has that digest."""
    digest = request.match_info["digest"]
    if not _HEX.fullmatch(digest):
        raise RequestError(
            400, "INVALID_DIGEST", f"{digest[:80]!r} is not a SHA-256 (64 lowercase hex digits)"
        )
    opened = await _open_fresh(request.app[MANAGER].ledger, digest)
    try:
        return await _send(request, opened, digest)
    finally:
        await asyncio.to_thread(opened.file.close)


async def _open_fresh(ledger: Ledger, digest: str) -> _Opened:
    """The first indexed file for ``digest`` that still is what was indexed, open; stale
    entries met on the way are dropped."""
    for entry in await ledger.contents.find(digest):
        opened = await asyncio.to_thread(_open, entry)
        if isinstance(opened, _Opened):
            return opened
        if opened is not None:
            log.info("content index: dropping %s for %s: %s", entry.path, digest, opened)
            await ledger.contents.drop(entry.path)
    raise RequestError(404, "BLOB_NOT_FOUND", f"no finished file with SHA-256 {digest} here")


def _open(entry: ContentRecord) -> _Opened | str | None:
    """``entry``'s file open for reading if it is unchanged; else why it is stale (a str),
    or None when it cannot be opened now for a reason that says nothing about it. Blocking."""
    try:
        before = os.lstat(entry.path)
        if not stat.S_ISREG(before.st_mode):
            # Never opened: a FIFO would block the open, a link may point anywhere.
            return "not a regular file"
        # O_NOFOLLOW: a link swapped in after the lstat fails here instead of being read.
        fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        return f"cannot open it ({e.strerror})" if e.errno in _GONE else None
    file = os.fdopen(fd, "rb")
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            why = "replaced while it was opened"
        elif (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
            why = "changed since it was indexed"
        else:
            return _Opened(file, st.st_size)
    except BaseException:
        file.close()
        raise
    file.close()
    return why


async def _send(request: web.Request, opened: _Opened, digest: str) -> web.StreamResponse:
    etag = f'"sha256:{digest}"'
    size = opened.size
    try:
        span = requested_span(
            request.headers.get(hdrs.RANGE), request.headers.get(hdrs.IF_RANGE), size, etag
        )
    except RangeNotSatisfiable as e:
        response = error_response(416, "RANGE_NOT_SATISFIABLE", str(e))
        response.headers[hdrs.CONTENT_RANGE] = f"bytes */{size}"
        return response
    response = web.StreamResponse(
        status=206 if span.partial else 200,
        headers={
            hdrs.CONTENT_TYPE: "application/octet-stream",
            hdrs.ETAG: etag,
            hdrs.ACCEPT_RANGES: "bytes",
            "X-Content-Sha256": digest,
            "X-Content-Type-Options": "nosniff",
        },
    )
    if span.partial:
        response.headers[hdrs.CONTENT_RANGE] = span.content_range(size)
    response.content_length = span.count
    await response.prepare(request)
    if request.method != hdrs.METH_HEAD and span.count:
        try:
            sent = await _body(request, opened.file, span)
        except ConnectionError:
            # A peer that has what it wanted (or gave up) just hangs up: nothing went wrong
            # here, and the connection is not fit to be kept.
            log.debug("the client left before the bytes of %s were sent", digest)
            response.force_close()
            return response
        if sent < span.count:
            # The file shrank after it was checked: the client must see a short body end
            # its connection, not wait on a kept-alive one for bytes that will never come.
            log.warning("blob %s shrank while it was being served", digest)
            response.force_close()
            return response
    await response.write_eof()
    return response


async def _body(request: web.Request, file: BinaryIO, span: Span) -> int:
    """The span's bytes by sendfile(2) (asyncio reads and writes them itself where it
    cannot): no copy through Python, never the whole span in memory."""
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("the peer went away")
    # The headers went out in prepare(); sendfile lets them drain first.
    return await asyncio.get_running_loop().sendfile(transport, file, span.start, span.count)
