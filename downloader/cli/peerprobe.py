"""Asking peers what they hold, for ``modelhaul peers``: ``GET /health`` (does it answer,
which version, how fast) and then a ``HEAD`` of its blob route per digest.

A peer is untrusted: its answers are read with bounds (a small health body, a size that
is a size) and a ``200`` counts only when it names the digest that was asked for. A peer
that cannot be reached, times out or answers nonsense becomes one line saying why.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from downloader.peers import Peer

TIMEOUT = 5.0  # seconds per request: a peer on the same network answers far sooner
CONCURRENCY = 8  # requests in flight at once, over every peer
MAX_HEALTH_BODY = 64 * 1024
MAX_SIZE = 2**62  # larger than any file; a bigger Content-Length is nonsense
_VERSION = re.compile(r"[\x21-\x7e]{1,64}")
_LENGTH = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True, slots=True)
class Held:
    """A file a peer holds: its SHA-256 and size."""

    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class PeerReport:
    """What one peer said: whether it answers (and how fast, which version), what it
    holds of the digests asked about, and the first trouble met (or why it does not
    answer)."""

    base: str
    answers: bool
    latency: float | None = None  # seconds to the health answer's headers
    version: str | None = None
    held: tuple[Held, ...] = ()
    asked: int = 0
    trouble: str | None = None


class _Refused(Exception):
    """A request that got no usable answer, with the one line saying why."""


async def ask_peers(
    session: aiohttp.ClientSession,
    peers: Sequence[Peer],
    digests: Sequence[str],
    *,
    seconds: float = TIMEOUT,
    concurrency: int = CONCURRENCY,
) -> list[PeerReport]:
    """Ask every peer at once (``concurrency`` requests in flight in all, each given
    ``seconds``); the reports in the peers' order."""
    gate = asyncio.Semaphore(concurrency)
    limit = aiohttp.ClientTimeout(total=seconds)
    return list(await asyncio.gather(*(_ask(session, gate, limit, p, digests) for p in peers)))


async def _ask(
    session: aiohttp.ClientSession,
    gate: asyncio.Semaphore,
    limit: aiohttp.ClientTimeout,
    peer: Peer,
    digests: Sequence[str],
) -> PeerReport:
    try:
        latency, version = await _health(session, gate, limit, peer)
    except _Refused as e:
        return PeerReport(peer.base, answers=False, trouble=str(e))
    answers = await asyncio.gather(*(_head(session, gate, limit, peer, d) for d in digests))
    held = tuple(a for a in answers if isinstance(a, Held))
    failed = [a for a in answers if isinstance(a, str)]
    trouble = None
    if failed:
        trouble = f"{len(failed)} of {len(digests)} questions got no answer: {failed[0]}"
    return PeerReport(peer.base, True, latency, version, held, len(digests), trouble)


async def _health(
    session: aiohttp.ClientSession,
    gate: asyncio.Semaphore,
    limit: aiohttp.ClientTimeout,
    peer: Peer,
) -> tuple[float, str | None]:
    async with gate:
        started = time.monotonic()
        try:
            async with session.get(
                f"{peer.base}/health",
                headers=peer.auth_headers,
                timeout=limit,
                allow_redirects=False,  # a redirect would take its token elsewhere
            ) as r:
                latency = time.monotonic() - started
                body = await _read_up_to(r, MAX_HEALTH_BODY + 1)
                status, reason = r.status, r.reason or ""
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise _Refused(_why(e, limit)) from None
    if status != 200:
        raise _Refused(f"/health answered {status} {reason}{_message(body)}".strip())
    try:
        health = json.loads(body) if len(body) <= MAX_HEALTH_BODY else None
    except (ValueError, UnicodeDecodeError):
        health = None
    if not isinstance(health, dict) or health.get("status") != "ok":
        raise _Refused("not a modelhaul server (its /health is not modelhaul's)")
    version = health.get("version")
    return latency, version if isinstance(version, str) and _VERSION.fullmatch(version) else None


async def _head(
    session: aiohttp.ClientSession,
    gate: asyncio.Semaphore,
    limit: aiohttp.ClientTimeout,
    peer: Peer,
    digest: str,
) -> Held | str | None:
    """Held, None (not there), or why the question got no answer."""
    async with gate:
        try:
            async with session.head(
                peer.blob_url(digest),
                headers=peer.auth_headers,
                timeout=limit,
                allow_redirects=False,
            ) as r:
                status, reason, headers = r.status, r.reason or "", r.headers
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            return _why(e, limit)
    if status == 404:
        return None
    if status != 200:
        return f"HEAD {digest[:12]}… answered {status} {reason}".strip()
    length = headers.get("Content-Length", "")
    if headers.get("X-Content-Sha256") != digest:
        return f"HEAD {digest[:12]}… answered for another digest"
    if not _LENGTH.fullmatch(length) or int(length) > MAX_SIZE:
        return f"HEAD {digest[:12]}… gave no size"
    return Held(digest, int(length))


def _why(error: BaseException, limit: aiohttp.ClientTimeout) -> str:
    """One line for a request that failed."""
    if isinstance(error, TimeoutError):
        return f"no answer within {limit.total:g} s"
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return "its certificate is not trusted (--ca-certificate names a CA to trust)"
    if isinstance(error, aiohttp.ClientConnectorError):
        cause = error.os_error
        return f"cannot connect: {os.strerror(cause.errno) if cause.errno else cause}"
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"[:200]


def _message(body: bytes) -> str:
    """``: <message>`` of a modelhaul JSON error body (nothing for anything else)."""
    try:
        error = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    message = error.get("message") if isinstance(error, dict) else None
    return f": {message[:200]}" if isinstance(message, str) else ""


async def _read_up_to(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body to its end, or its first ``limit`` bytes (``read(n)`` alone returns what
    has arrived, which may be a part of a small body)."""
    body = b""
    while len(body) < limit:
        piece = await response.content.read(limit - len(body))
        if not piece:
            break
        body += piece
    return body
