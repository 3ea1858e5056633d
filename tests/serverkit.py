"""A real server on 127.0.0.1 (the app factory behind an aiohttp runner), and SSE reading."""

from __future__ import annotations

import asyncio
import json
import socket
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from downloader.manager import DownloadManager
from downloader.server import create_app
from downloader.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def running_server(
    settings: Settings,
    *,
    token: str | None = None,
    heartbeat: float | None = None,
    **options: Any,
):
    """Start the server; yields (base_url, app). The app opens its own manager (a worker).
    ``options`` go to ``create_app`` (``allowed_hosts``, ``allowed_origins``)."""
    app = create_app(settings, token=token, heartbeat=heartbeat, **options)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        await runner.cleanup()


class SSE:
    """Reads Server-Sent Events from an open response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments = 0

    async def next(self, timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
        """The next event: (id, data)."""
        event_id, data = None, []
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.response.content.readline()).decode()
                if not line:
                    raise EOFError("the stream ended")
                line = line.rstrip("\n")
                if line.startswith(":"):
                    self.comments += 1
                elif line.startswith("id: "):
                    event_id = int(line[4:])
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif line == "" and data:
                    assert event_id is not None, "an event without an id"
                    return event_id, json.loads("\n".join(data))

    async def until(self, check, timeout: float = 30.0) -> list[tuple[int, dict[str, Any]]]:
        """Events up to and including the first for which ``check(data)`` holds."""
        seen = []
        async with asyncio.timeout(timeout):
            while True:
                item = await self.next(timeout)
                seen.append(item)
                if check(item[1]):
                    return seen


async def manager_of(app: web.Application) -> DownloadManager:
    from downloader.server.context import MANAGER

    return app[MANAGER]
