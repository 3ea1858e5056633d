"""Server-Sent Events: one pump reads every progress report, numbers it and fans it out;
each connected client gets its own bounded queue, throttled per download.

- ``id:`` on every event; ``Last-Event-ID`` on reconnect replays what the client missed from
  a bounded buffer (or, if it fell out of the buffer, sends the current state of each
  download instead);
- at most ~4 events a second per download (the latest wins; final states go at once);
- a ``: ping`` comment every 15 s keeps proxies from cutting the stream and finds dead
  clients; a client that goes away leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from downloader.manager import DownloadManager
from downloader.progress import DownloadProgress

BUFFER = 2000
QUEUE = 512
MIN_GAP = 0.25  # seconds between two events of one download
HEARTBEAT = 15.0

Formatter = Callable[[DownloadProgress], Awaitable[dict[str, Any] | None]]


class EventHub:
    """Numbers progress reports and hands them to connected streams."""

    def __init__(self, manager: DownloadManager, *, heartbeat: float = HEARTBEAT) -> None:
        self.manager = manager
        self.heartbeat = heartbeat
        self._next_id = 0
        self._log: collections.deque[tuple[int, DownloadProgress]] = collections.deque(
            maxlen=BUFFER
        )
        self._clients: dict[asyncio.Queue[tuple[int, DownloadProgress]], int | None] = {}
        self._streams: set[asyncio.Task[object]] = set()
        self._pump: asyncio.Task[None] | None = None

    @property
    def clients(self) -> int:
        """Connected streams (tests check that none leak)."""
        return len(self._clients)

    def start(self) -> None:
        self._pump = asyncio.create_task(self._run(), name="sse pump")

    async def close_streams(self) -> None:
        """End every open stream (the server is shutting down: they would never end)."""
        for task in list(self._streams):
            task.cancel()

    async def stop(self) -> None:
        await self.close_streams()
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)

    def _number(self, progress: DownloadProgress) -> tuple[int, DownloadProgress]:
        self._next_id += 1
        return self._next_id, progress

    async def _run(self) -> None:
        async for progress in self.manager.watch():
            item = self._number(progress)
            self._log.append(item)
            for queue, wanted in list(self._clients.items()):
                if wanted is None or wanted == progress.task_id:
                    if queue.full():
                        with contextlib.suppress(asyncio.QueueEmpty):
                            queue.get_nowait()
                    queue.put_nowait(item)

    def _replay(
        self, last_id: int, task_id: int | None
    ) -> list[tuple[int, DownloadProgress]] | None:
        if not self._log or last_id < self._log[0][0] - 1 or last_id > self._next_id:
            return None  # older than the buffer (or from another server run)
        return [i for i in self._log if i[0] > last_id and task_id in (None, i[1].task_id)]

    async def _snapshot(self, task_id: int | None) -> list[tuple[int, DownloadProgress]]:
        if task_id is not None:
            return [self._number(await self.manager.progress(task_id))]
        tasks = await self.manager.list(limit=200)
        return [self._number(await self.manager.progress(t.id)) for t in reversed(tasks)]

    async def stream(
        self,
        request: web.Request,
        fmt: Formatter,
        *,
        task_id: int | None = None,
    ) -> web.StreamResponse:
        """Serve one SSE client until it goes away."""
        last_id = _last_event_id(request)
        if task_id is not None:
            await self.manager.get(task_id)  # 404 before the stream starts
        queue: asyncio.Queue[tuple[int, DownloadProgress]] = asyncio.Queue(QUEUE)
        self._clients[queue] = task_id
        current = asyncio.current_task()
        if current is not None:
            self._streams.add(current)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)
            backlog = self._replay(last_id, task_id) if last_id is not None else None
            if backlog is None:
                backlog = await self._snapshot(task_id)
            for item in backlog:
                await _send(response, item, fmt)
            await self._follow(response, queue, fmt)
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the client went away
        finally:
            self._clients.pop(queue, None)
            self._streams.discard(current)  # type: ignore[arg-type]
        return response

    async def _follow(
        self,
        response: web.StreamResponse,
        queue: asyncio.Queue[tuple[int, DownloadProgress]],
        fmt: Formatter,
    ) -> None:
        sent_at: dict[int | None, float] = {}
        held: dict[int | None, tuple[int, DownloadProgress]] = {}
        last_write = time.monotonic()
        while True:
            now = time.monotonic()
            due = [now + self.heartbeat - (now - last_write)]
            due += [sent_at[k] + MIN_GAP for k in held]
            try:
                async with asyncio.timeout(max(0.0, min(due) - now)):
                    item = await queue.get()
            except TimeoutError:
                item = None
            now = time.monotonic()
            if item is not None:
                key = item[1].task_id
                if item[1].status.is_final or now - sent_at.get(key, 0.0) >= MIN_GAP:
                    held.pop(key, None)
                    await _send(response, item, fmt)
                    sent_at[key] = last_write = now
                else:
                    held[key] = item  # a newer report of the same download replaces it
            for key in [k for k in held if now - sent_at.get(k, 0.0) >= MIN_GAP]:
                await _send(response, held.pop(key), fmt)
                sent_at[key] = last_write = now
            if now - last_write >= self.heartbeat:
                await response.write(b": ping\n\n")
                last_write = now


async def _send(
    response: web.StreamResponse, item: tuple[int, DownloadProgress], fmt: Formatter
) -> None:
    event_id, progress = item
    data = await fmt(progress)
    if data is None:
        return
    await response.write(f"id: {event_id}\ndata: {json.dumps(data)}\n\n".encode())


def _last_event_id(request: web.Request) -> int | None:
    # Anything but a plausible id (garbage, thousands of digits) counts as none given: the
    # client then gets the current state of everything, as after a long absence.
    raw = (request.headers.get("Last-Event-ID") or request.query.get("lastEventId") or "").strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        return None
    return int(raw)
