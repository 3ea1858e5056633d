"""An HTTP origin with correct range semantics and faults injected on demand.

    async with Origin({"model.gguf": path_or_bytes}) as origin:
        origin.inject(Fault(FaultKind.RESET, at_byte=1 << 20))
        url = origin.url("model.gguf")

Serves ``/files/<name>`` (GET, HEAD; ``Range``, ``If-Range``, strong ETags, 206/416) and
``/redirect/<name>``, which answers 302 to a signed URL on a second port (another origin,
like a CDN) that expires after ``signed_ttl`` seconds (then 403). Every request is logged
with its headers and client port, and every body byte sent is counted (per file and per
client port), so tests can assert on both. ``slow=SlowEdges(every=4, rate=...)`` caps every
fourth TCP connection, as CDN edges cap some. Run standalone: ``python -m
downloader.testing.serve_origin DIR [--port N] [--throttle 10M] [--slow-every 4 --slow-rate 1M]``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

from aiohttp import web

from downloader.testing.faults import (
    Fault,
    FaultKind,
    SlowEdges,
    if_range_holds,
    parse_range,
)
from downloader.testing.loopback import track, unread

PIECE = 64 * 1024


@dataclass(frozen=True)
class RequestLog:
    """One request as the origin saw it."""

    method: str
    path: str
    headers: Mapping[str, str]
    status: int
    range: str | None
    at: float
    peer: int = 0  # the client's port: requests with the same one came on one connection
    client: str = ""  # the client's address (workers bound to their own loopback addresses)


@dataclass(frozen=True)
class _File:
    path: Path
    etag: str
    mtime: float
    size: int


@dataclass
class Origin:
    """The test origin. ``files`` maps names to paths or bytes (bytes are written to a
    temporary folder)."""

    files: Mapping[str, Path | bytes] = field(default_factory=dict)
    throttle: int | None = None  # bytes per second per response
    signed_ttl: float = 60.0
    seed: int = 0
    workdir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 0
    ranges: bool = True  # False: a server that ignores Range and advertises no support
    sized: bool = True  # False: no Content-Length (chunked), so the size is unknown
    tls: Any = None  # an ssl.SSLContext with the server's certificate: https on both ports
    slow: SlowEdges | None = None  # some connections capped far below ``throttle``
    # Each response socket's kernel send buffer (None: the system's, which grows to
    # megabytes); small, the log of writes lags the client's reads less (see ``taken``).
    send_buffer: int | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._faults: list[Fault] = []
        self._store: dict[str, _File] = {}
        self._secret = os.urandom(16)
        self._runner: web.AppRunner | None = None
        self._versions = 0
        self.log: list[RequestLog] = []
        self.served = 0
        self.served_by_file: dict[str, int] = {}
        self.served_by_peer: dict[int, int] = {}  # by client port
        # (time.monotonic(), file name, bytes) of every piece written: rates as served
        self.sent_log: list[tuple[float, str, int]] = []
        # client port -> (the file last served on that connection, its transport)
        self._connections: dict[int, tuple[str, asyncio.BaseTransport]] = {}
        self.base_url = ""
        self.cdn_url = ""
        self._made_workdir = False

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> Origin:
        """Listen on ``host:port`` (0: a free port) and on a second port for signed URLs."""
        if self.workdir is None:
            import tempfile

            self.workdir = Path(tempfile.mkdtemp(prefix="modelhaul-origin-"))
            self._made_workdir = True
        for name, content in self.files.items():
            self.put(name, content)
        app = web.Application()
        app.router.add_route("GET", "/files/{name:.+}", self._serve)
        app.router.add_route("HEAD", "/files/{name:.+}", self._serve)
        app.router.add_route("GET", "/redirect/{name:.+}", self._redirect)
        app.router.add_route("HEAD", "/redirect/{name:.+}", self._redirect)
        app.router.add_route("GET", "/signed/{name:.+}", self._signed)
        app.router.add_route("HEAD", "/signed/{name:.+}", self._signed)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        main = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.tls)
        cdn = web.TCPSite(self._runner, self.host, 0, ssl_context=self.tls)
        await main.start()
        await cdn.start()
        self.port = _bound_port(main)
        scheme = "https" if self.tls is not None else "http"
        # An IPv6 address (``::1``) goes in brackets in a URL.
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.base_url = f"{scheme}://{shown}:{self.port}"
        self.cdn_url = f"{scheme}://{shown}:{_bound_port(cdn)}"
        return self

    async def stop(self) -> None:
        """Stop serving; a folder the origin made for its files goes with it (each test's
        origins had left theirs behind: tens of GB of /tmp over a day of runs)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._made_workdir and self.workdir is not None:
            import shutil

            await asyncio.to_thread(shutil.rmtree, self.workdir, True)
            self.workdir, self._made_workdir = None, False

    async def __aenter__(self) -> Origin:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- content ------------------------------------------------------------------------------

    def put(self, name: str, content: Path | bytes) -> None:
        """Serve ``content`` as ``name`` (replacing any earlier version, with a new ETag)."""
        assert self.workdir is not None, "start the origin first"
        if isinstance(content, bytes | bytearray):
            self._versions += 1
            self.workdir.mkdir(parents=True, exist_ok=True)
            path = self.workdir / f"v{self._versions}-{name.replace('/', '_')}"
            path.write_bytes(content)
        else:
            path = Path(content)
        stat = path.stat()
        tag = hashlib.sha256(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
        self._store[name] = _File(path, f'"{tag[:24]}"', stat.st_mtime, stat.st_size)

    def url(self, name: str, *, signed: bool = False) -> str:
        """The URL of ``name``; ``signed`` goes through a redirect to an expiring URL."""
        return f"{self.base_url}/{'redirect' if signed else 'files'}/{name}"

    def signed_url(self, name: str) -> str:
        """A URL of ``name`` on the second port (another origin, like a CDN) that expires
        ``signed_ttl`` seconds from now."""
        expires = f"{time.time() + self.signed_ttl:.3f}"
        return f"{self.cdn_url}/signed/{name}?expires={expires}&sig={self._sign(name, expires)}"

    def etag(self, name: str) -> str:
        """The current strong ETag of ``name``."""
        return self._store[name].etag

    def content(self, name: str) -> bytes:
        """The current bytes of ``name``."""
        return self._store[name].path.read_bytes()

    def inject(self, *faults: Fault) -> None:
        """Add fault rules."""
        self._faults.extend(faults)

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self._faults.clear()

    def range_headers(self, name: str | None = None) -> list[str]:
        """The Range headers of the GETs received (for one file, or all)."""
        return [
            r.range
            for r in self.log
            if r.method == "GET" and r.range and (name is None or r.path.endswith("/" + name))
        ]

    # --- handlers -----------------------------------------------------------------------------

    async def _redirect(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in self._store:
            return self._logged(request, web.Response(status=404, text="not found"))
        target = self.signed_url(name)
        return self._logged(request, web.Response(status=302, headers={"Location": target}))

    async def _signed(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        try:
            expires = request.query["expires"]
            good = hmac.compare_digest(request.query["sig"], self._sign(name, expires))
            expired = time.time() > float(expires)
        except (KeyError, ValueError):
            good, expired = False, True
        if not good or expired:
            return self._logged(request, web.Response(status=403, text="signature expired"))
        return await self._serve(request)

    def _sign(self, name: str, expires: str) -> str:
        return hmac.new(self._secret, f"{name}:{expires}".encode(), "sha256").hexdigest()[:32]

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        fault = self._fault_for(request, name)
        if fault is not None and fault.kind is FaultKind.CHANGE:
            self._change(name)
        stored = self._store.get(name)
        if stored is None:
            return self._logged(request, web.Response(status=404, text=f"no file {name}"))
        if fault is not None and fault.kind is FaultKind.STATUS:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(int(fault.retry_after))
            return self._logged(request, web.Response(status=fault.status, headers=headers))

        size = stored.size
        headers = {
            "ETag": stored.etag,
            "Last-Modified": formatdate(stored.mtime, usegmt=True),
            "Content-Type": "application/octet-stream",
        }
        if self.ranges:
            headers["Accept-Ranges"] = "bytes"
        wanted = parse_range(request.headers.get("Range"), size) if self.ranges else None
        if wanted is not None and not if_range_holds(
            request.headers.get("If-Range"), stored.etag, stored.mtime
        ):
            wanted = None  # If-Range failed: the whole, current file
        if fault is not None and fault.kind is FaultKind.IGNORE_RANGE:
            wanted = None
        if wanted == "unsatisfiable":
            headers["Content-Range"] = f"bytes */{size}"
            return self._logged(request, web.Response(status=416, headers=headers))
        if wanted is None:
            status, start, end = 200, 0, size
        else:
            status, (start, end) = 206, wanted
            if fault is not None and fault.kind is FaultKind.WRONG_RANGE:
                shift = min(size - end, max(1, (end - start) // 2))
                start, end = start + shift, end + shift
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        response = web.StreamResponse(status=status, headers=headers)
        if self.sized:
            response.content_length = end - start
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        self._record(request, status)
        if request.method == "HEAD":
            return response
        await self._send(request, response, stored.path, start, end, name, fault)
        return response

    async def _send(
        self,
        request: web.Request,
        response: web.StreamResponse,
        path: Path,
        start: int,
        end: int,
        name: str,
        fault: Fault | None,
    ) -> None:
        cut = None
        if fault is not None and fault.kind in (
            FaultKind.RESET,
            FaultKind.TRUNCATE,
            FaultKind.STALL,
        ):
            cut = min(end - start, fault.at_byte)
        rate, peer = self.throttle, _peer(request)
        if self.slow is not None:
            cap = self.slow.rate_of(peer)
            rate = min(rate or cap, cap) if cap else rate
        if request.transport is not None:
            track(request.transport, name, self.send_buffer, self._connections)
        began = time.monotonic()
        sent = 0
        fd = await asyncio.to_thread(os.open, path, os.O_RDONLY)
        try:
            while start + sent < end:
                length = min(PIECE, end - start - sent)
                if cut is not None and sent < cut:
                    length = min(length, cut - sent)
                if cut is not None and sent == cut:
                    assert fault is not None
                    if fault.kind is FaultKind.STALL:
                        await asyncio.sleep(fault.seconds)
                        cut = None
                        continue
                    if request.transport is not None:
                        if fault.kind is FaultKind.RESET:
                            request.transport.abort()
                        else:
                            request.transport.close()
                    return
                data = await asyncio.to_thread(os.pread, fd, length, start + sent)
                await response.write(data)
                sent += len(data)
                self.served += len(data)
                self.served_by_file[name] = self.served_by_file.get(name, 0) + len(data)
                self.served_by_peer[peer[1]] = self.served_by_peer.get(peer[1], 0) + len(data)
                self.sent_log.append((time.monotonic(), name, len(data)))
                if rate:
                    ahead = sent / rate - (time.monotonic() - began)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
        finally:
            await asyncio.to_thread(os.close, fd)
        await response.write_eof()

    # --- faults and logs ----------------------------------------------------------------------

    def served_between(self, start: float, end: float, name: str | None = None) -> int:
        """Body bytes written from ``start`` to ``end`` (``time.monotonic()``), of one file
        or of all (into the kernel: socket buffers included, see ``taken``)."""
        return sum(n for at, file, n in self.sent_log if start <= at < end and name in (None, file))

    def taken(self, name: str | None = None) -> int:
        """Body bytes served (of one file, or all) that the client has read: served minus
        what is still on the way (``testing.loopback``, Linux): where a client's limit shows."""
        served = self.served if name is None else self.served_by_file.get(name, 0)
        return served - unread(self._connections, self.port, name)

    def _fault_for(self, request: web.Request, name: str) -> Fault | None:
        if request.method != "GET":
            return None
        for fault in self._faults:
            if fault.times == 0 or (fault.path is not None and fault.path != name):
                continue
            if fault.ranged_only and "Range" not in request.headers:
                continue
            fault.seen += 1
            if fault.seen <= fault.after or self._rng.random() >= fault.probability:
                continue
            if fault.times > 0:
                fault.times -= 1
            return fault
        return None

    def _change(self, name: str) -> None:
        old = self._store[name].path.read_bytes()
        flipped = bytes(b ^ 0xFF for b in old[:4096]) + old[4096:]
        self.put(name, flipped)

    def _record(self, request: web.Request, status: int) -> None:
        self.log.append(
            RequestLog(
                request.method,
                request.path,
                dict(request.headers),
                status,
                request.headers.get("Range"),
                time.time(),
                _peer(request)[1],
                _peer(request)[0],
            )
        )

    def _logged(self, request: web.Request, response: web.Response) -> web.Response:
        self._record(request, response.status)
        return response


def _peer(request: web.Request) -> tuple[str, int]:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return (str(peer[0]), int(peer[1])) if peer else ("", 0)


def _bound_port(site: web.TCPSite) -> int:
    server = site._server  # aiohttp keeps the listening socket here
    assert server is not None and server.sockets
    return int(server.sockets[0].getsockname()[1])


__all__ = ["Fault", "FaultKind", "Origin", "RequestLog", "SlowEdges"]
