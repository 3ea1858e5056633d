"""The aiohttp application: routes, the safety middlewares, the web page, the lifecycle.

    app = create_app(settings, token="s3cret")      # embeddable in another aiohttp app
    web.run_app(app, host="127.0.0.1", port=8000)

Safe by default: other web sites are kept out (``guard``: loopback or configured ``Host``
only, no foreign ``Origin``, JSON bodies only), except those listed (``cors``); every route
needs the bearer token when one is set (compared in constant time; ``?access_token=``
works too, for ``EventSource``); bodies over 64 KiB get 413; malformed JSON 400; bad fields
422 naming the field; destinations stay inside the download root; every error is JSON with a
code and a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib.resources
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path

from aiohttp import web

from downloader.manager import DownloadManager
from downloader.peers import BLOB_ROUTE
from downloader.server import blobs, compat, cors, v1
from downloader.server.context import EVENTS, MANAGER, PEER_TOKEN, ROOT, SITE, TOKEN
from downloader.server.errors import error_response, respond_to
from downloader.server.events import EventHub
from downloader.server.guard import SitePolicy
from downloader.server.openapi import openapi
from downloader.settings import Settings

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    settings: Settings | None = None,
    *,
    token: str | None = None,
    peer_token: str | None = None,
    manager: DownloadManager | None = None,
    root: Path | None = None,
    heartbeat: float | None = None,
    allowed_hosts: Iterable[str] = frozenset(),
    allowed_origins: Iterable[str] = frozenset(),
) -> web.Application:
    """The server as an aiohttp app. Without ``manager`` it opens one on startup (a worker
    that drains the queue) and closes it on cleanup; ``root`` is where destinations may go
    (default: the settings' download folder).

    ``allowed_hosts``: ``Host`` names it answers besides loopback ones (the address it was
    told to listen on); ``allowed_origins``: other sites (``scheme://host[:port]``) whose
    pages may call it, with CORS (a ``ValueError`` names one that is no origin). See
    ``downloader.server.guard`` and ``downloader.server.cors``."""
    settings = settings or Settings.from_env()
    app = web.Application(
        client_max_size=MAX_BODY, middlewares=[errors, guard, cors.preflight, authenticate]
    )
    app[SITE] = SitePolicy(frozenset(allowed_hosts), frozenset(allowed_origins))
    app[TOKEN] = token or ""
    app[PEER_TOKEN] = peer_token or ""
    app[ROOT] = (root or settings.download_dir).absolute()
    app.add_routes(v1.routes)
    app.add_routes(compat.routes)
    app.add_routes(blobs.routes)  # finished files by SHA-256, for peers
    app.router.add_get("/api/v1/openapi.json", _openapi)
    app.router.add_get("/", _page)
    app.router.add_get("/static/{name}", _static)
    app.cleanup_ctx.append(_lifecycle(settings, manager, heartbeat))
    app.on_response_prepare.append(cors.allow_origin)
    app.on_shutdown.append(_end_streams)
    return app


async def _end_streams(app: web.Application) -> None:
    # Runs before aiohttp waits for open requests to finish: an event stream never would.
    if EVENTS in app:
        await app[EVENTS].close_streams()


def _lifecycle(
    settings: Settings, given: DownloadManager | None, heartbeat: float | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if given is None:
                manager = await stack.enter_async_context(DownloadManager(settings))
                # A server is a worker too: it runs whatever is queued, from anywhere.
                worker = asyncio.create_task(manager.serve_forever(), name="server worker")
                stack.callback(worker.cancel)
            else:
                manager = given
            app[MANAGER] = manager
            await asyncio.to_thread(app[ROOT].mkdir, parents=True, exist_ok=True)
            hub = EventHub(manager, **({"heartbeat": heartbeat} if heartbeat else {}))
            app[EVENTS] = hub
            hub.start()
            stack.push_async_callback(hub.stop)
            yield

    return lifecycle


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into its JSON response (see ``errors.respond_to``)."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return respond_to(e)
    except Exception as e:
        return respond_to(e)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse what another web site could have sent through the user's browser."""
    request.app[SITE].check(request)
    return await handler(request)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With a token set, every route needs it (``Authorization: Bearer …``); the peer
    token (``--peer-token``) opens the blob route alone."""
    expected = request.app[TOKEN]
    if expected:
        header = request.headers.get("Authorization", "")
        given = (
            header[7:] if header.startswith("Bearer ") else request.query.get("access_token", "")
        )
        # Headers that are not UTF-8 arrive with surrogate escapes: compare them as bytes.
        given_bytes = given.encode(errors="surrogateescape")
        if not hmac.compare_digest(given_bytes, expected.encode()) and not _peer_may(
            request, given_bytes
        ):
            return error_response(401, "UNAUTHORIZED", "a valid bearer token is required")
    return await handler(request)


_PEER_PAGES = frozenset({"/health", "/api/v1/health"})  # "is it up?", no paths in it


def _peer_may(request: web.Request, given: bytes) -> bool:
    """The peer token opens reading blobs (and ``/health``), nothing else: a peer may fetch
    what this machine holds, never start, stop or list anything."""
    peer = request.app[PEER_TOKEN]
    return (
        bool(peer)
        and request.method in ("GET", "HEAD")
        and (request.path.startswith(BLOB_ROUTE) or request.path in _PEER_PAGES)
        and hmac.compare_digest(given, peer.encode())
    )


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi())


async def _asset(name: str) -> bytes:
    files = importlib.resources.files("downloader.server").joinpath("static", name)
    return await asyncio.to_thread(files.read_bytes)


async def _page(request: web.Request) -> web.Response:
    body = await _asset("index.html")
    # Its buttons act on downloads: no other site may frame it and trick a click.
    headers = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}
    return web.Response(body=body, content_type="text/html", charset="utf-8", headers=headers)


_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
# The names we ship: anything else (NUL, 5,000 characters, dots) is not worth a file lookup.
_ASSET = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.(?:js|css|svg)")
_NOSNIFF = {"X-Content-Type-Options": "nosniff"}


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if not _ASSET.fullmatch(name):
        raise web.HTTPNotFound()
    try:
        body = await _asset(name)
    except OSError as e:
        raise web.HTTPNotFound() from e
    return web.Response(
        body=body, content_type=_TYPES[Path(name).suffix], charset="utf-8", headers=_NOSNIFF
    )
