"""Running the server: the bind check and the loop ``modelhaul serve`` runs."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable

from aiohttp import web

from downloader.errors import ModelhaulError
from downloader.server.app import create_app
from downloader.settings import Settings

log = logging.getLogger(__name__)


class BindError(ModelhaulError):
    """A bind the server refuses (reachable from other machines without a token)."""


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token."""
    if token:
        return
    if not _loopback(host):
        raise BindError(
            f"refusing to listen on {host} without a token: anyone who can reach it could "
            "start downloads; pass --token (or bind 127.0.0.1)"
        )


def _loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(
                ipaddress.ip_address(info[4][0]).is_loopback
                for info in socket.getaddrinfo(host, None)
            )
        except OSError:
            return False


def bind_address(host: str) -> str:
    """``--host`` as the socket takes it: ``[::1]``, as written in a URL, is ``::1``."""
    host = host.strip()
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def server_url(host: str, port: int) -> str:
    """The server's address as a URL: an IPv6 address goes in brackets."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/"


async def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    peer_token: str | None = None,
    cors_origins: Iterable[str] = (),
    ready: asyncio.Event | None = None,
) -> None:
    """Serve until cancelled; running downloads are paused (resumable) on the way out.
    ``cors_origins``: other sites whose pages may call it (``--cors-origin``);
    ``peer_token``: opens the blob route only (``--peer-token``)."""
    host = bind_address(host)
    check_bind(host, token)
    # The address it listens on is a name it answers to (a LAN name, or any IP for 0.0.0.0).
    app = create_app(
        settings,
        token=token,
        peer_token=peer_token,
        allowed_hosts={host},
        allowed_origins=frozenset(cors_origins),
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.info("serving on %s", server_url(host, port))
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
