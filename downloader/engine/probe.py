"""Probe a remote file: size, range support, validators, final URL after redirects."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import aiohttp

from downloader.engine.http import Resource, parse_content_range
from downloader.errors import HTTPStatusError

BYTE_TIMEOUT = 2.0  # seconds to wait for the probe's one byte before dropping the connection


@dataclass(frozen=True, slots=True)
class Probe:
    """What one ``GET`` of the first byte tells about a remote file."""

    url: str
    size: int | None
    ranges: bool
    etag: str | None
    last_modified: str | None
    # A 200 that still says "Accept-Ranges: bytes": a server (or a proxy) that ignored our
    # Range this once, worth asking again before concluding it has no ranges.
    says_ranges: bool = False


async def probe(resource: Resource) -> Probe:
    """Ask for byte 0 only: a 206 gives the size and proves range support, a 200 does not
    (asked twice when that 200 claims ``Accept-Ranges: bytes``)."""
    try:
        found = await _probe(resource, {"Range": "bytes=0-0"})
        if not found.ranges and found.says_ranges:
            found = await _probe(resource, {"Range": "bytes=0-0"})
        return found
    except HTTPStatusError as e:
        if e.status != 416:
            raise
    # 416 for the first byte: the file is empty. Ask for all of it to learn its validators.
    return await _probe(resource, {})


async def _probe(resource: Resource, headers: dict[str, str]) -> Probe:
    async with resource.get(headers) as response:
        headers = response.headers
        size: int | None
        # Never read more than the byte asked for: a server may send far more (or forever).
        # A body of exactly that byte is read so the connection can go back to the pool; any
        # other body is left unread, and closing the response drops the connection.
        if response.status == 206:
            cr = parse_content_range(headers.get("Content-Range"))
            size = cr.total if cr else None
            ranges = size is not None
            if response.content_length == 1:
                await _read_the_byte(response)
        else:
            length = headers.get("Content-Length")
            size = int(length) if length and length.isascii() and length.isdigit() else None
            ranges = size == 0
        return Probe(
            url=resource.final_url,
            size=size,
            ranges=ranges,
            etag=headers.get("ETag"),
            last_modified=headers.get("Last-Modified"),
            says_ranges=headers.get("Accept-Ranges", "").strip().lower() == "bytes",
        )


async def _read_the_byte(response: aiohttp.ClientResponse) -> None:
    """Read the one byte so the connection can go back to the pool. The headers already said
    all a probe needs: a reset or a stall here only costs the connection, never the probe."""
    with contextlib.suppress(TimeoutError, aiohttp.ClientError, OSError):
        async with asyncio.timeout(BYTE_TIMEOUT):
            await response.read()  # bounded: the body is exactly one byte


def if_range_value(etag: str | None, last_modified: str | None) -> str | None:
    """The validator to send in ``If-Range``: a strong ETag, else Last-Modified, else none."""
    if etag and not etag.startswith("W/"):
        return etag
    return last_modified
