"""Fetch workers: each takes a span, streams it with one range request, writes whole blocks
in place, and moves on to the next span (or steals half of another's) until none is left
or its crew retires it."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from downloader.engine.http import Resource, parse_content_range
from downloader.engine.mirrors import Mirror, Mirrors
from downloader.engine.partfile import PartFile
from downloader.engine.plan import Plan, Span
from downloader.engine.probe import if_range_value
from downloader.engine.ratelimit import TokenBucket
from downloader.engine.retry import RetryPolicy, TransientError
from downloader.errors import (
    DiskError,
    DiskFullError,
    HTTPStatusError,
    RemoteChangedError,
    TransferError,
)

LIMITED_READ_BUFFER = 64 * 1024


@dataclass(frozen=True, slots=True)
class Expected:
    """What the remote file must still be: its size and validators from the first probe.
    ``stand_in``: the file was not probed (download.py ``_probe_unneeded``), so the first
    response stands in for the probe; its validators then replace these for every later
    request of the file."""

    size: int
    etag: str | None
    last_modified: str | None
    if_range: str | None
    stand_in: bool = False


class ProbeNeeded(Exception):
    """The request standing in for a file's probe was not answered as a probe would have
    been (a 200, another size or none, an error status): the file is to be probed. Not a
    failure, nor a change of the remote file: nothing of it was written."""


@dataclass
class RangeJob:
    """Everything the workers of one file share."""

    resource: Resource
    part: PartFile
    block: int
    write_size: int  # bytes gathered before one write
    read_buffer: int  # the session's read buffer (Settings.read_buffer)
    write_seconds: float  # how long received bytes may wait for more before they are written
    expected: Expected
    limiter: TokenBucket
    policy: RetryPolicy
    on_received: Callable[[int], None]  # bytes arrived (progress, speed)
    on_written: Callable[[int], None]  # a block reached the file (hasher, checkpoints)
    rng: random.Random
    on_wait: Callable[[str | None], None] | None = None  # a long wait before a retry, or its end
    reached: bool = False  # some connection of this file has had bytes from the remote
    mirrors: Mirrors | None = None  # the file's URLs when it has more than one


@dataclass(eq=False)
class Lane:
    """One connection of a file as its crew sees it: the bytes it received, whether a
    response is streaming now (only then is its rate judged), the span it works on, and
    whether it is to stop after that span."""

    id: int
    received: int = 0
    streaming: bool = False
    span: Span | None = None
    retiring: bool = False
    mirror: Mirror | None = None  # the URL its request goes to (None: the file's one URL)


class _Progressed(TransientError):
    """A transient failure after some bytes of this attempt were written."""


async def work(job: RangeJob, plan: Plan, lane: Lane, first: Span | None = None) -> None:
    """One connection's loop: fetch spans (``first``, then whatever the plan gives) until
    the plan has nothing left or the lane is told to retire."""
    span = first if first is not None else plan.acquire(lane.id)
    while span is not None:
        lane.span = span
        try:
            await fetch_anywhere(job, span, lane)
        finally:
            plan.release(span, lane.id)
            lane.span = None
        if lane.retiring:
            return
        span = plan.acquire(lane.id)


async def fetch_anywhere(job: RangeJob, span: Span, lane: Lane) -> None:
    """Fetch ``span`` to its end from the file's URL, or with mirrors from the one that
    should take another connection; a mirror that fails past its retries or disagrees is
    dropped for this file and the span goes on from another (``AllMirrorsFailedError`` when
    none is left)."""
    mirrors = job.mirrors
    if mirrors is None:
        await fetch_fully(job, span, lane)
        return
    while True:
        mirror = lane.mirror = mirrors.pick()
        mirrors.begin(mirror, id(lane))
        try:
            await fetch_fully(job, span, lane)
            return
        except (DiskError, DiskFullError):
            raise  # our disk, not the mirror
        except RemoteChangedError as e:
            if mirror.resource is job.resource:
                raise  # the file's own URL changed: the file starts over, as without mirrors
            error = e
        except TransferError as e:
            error = e
        finally:
            mirrors.end(mirror, id(lane))
            lane.mirror = None
        await mirrors.drop(mirror, str(error))


async def fetch_fully(job: RangeJob, span: Span, lane: Lane | None = None) -> None:
    """Fetch ``span`` to its end, asking again after transient failures (a full budget
    again whenever bytes flowed)."""
    policy = job.policy
    while True:
        try:
            await fetch_span(job, span, lane)
            job.reached = True
            return
        except TransientError as e:
            if isinstance(e, _Progressed):  # bytes flowed before it failed: a full budget
                policy, job.reached = policy.reset(), True
            elif job.reached:  # another connection got bytes: the host is there
                policy = policy.knowing_reached()
            policy = await policy.next_attempt(
                e, _resource(job, lane).url, rng=job.rng, on_wait=job.on_wait
            )


async def fetch_span(job: RangeJob, span: Span, lane: Lane | None = None) -> None:
    """Stream ``span`` from where it stands to its end (which may shrink while we read)."""
    start = span.start + span.done
    if start >= span.end:
        return
    if not span.seeded:  # its partial block's digest would come out wrong
        raise RuntimeError(f"span at {span.start} resumed before its partial block was re-read")
    headers = {"Range": f"bytes={start}-{span.end - 1}"}
    expected = _expected(job, lane)
    if expected.if_range:
        headers["If-Range"] = expected.if_range
    wrote = 0
    resource = _resource(job, lane)
    read_buffer = _read_buffer(job)
    unlimited = read_buffer is None  # a limit that begins meanwhile ends this request
    try:
        async with resource.get(headers, read_buffer=read_buffer) as response:
            _check(expected, resource.url, response, start)
            if expected.stand_in:
                job.expected = _validated(expected, response)
            if lane is not None:
                lane.streaming = True
            wrote = await stream_into(job, span, response, lane=lane, until_limited=unlimited)
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        error = _Progressed if span.start + span.done > start else TransientError
        raise error(f"{type(e).__name__}: {e or 'connection lost'}") from e
    except TransientError as e:
        if span.start + span.done > start:
            raise _Progressed(str(e), retry_after=e.retry_after) from e
        raise
    except HTTPStatusError as e:
        if expected.stand_in:  # the probe asks instead: its answer is the one a user sees
            raise ProbeNeeded(str(e)) from e
        raise
    finally:
        if lane is not None:
            lane.streaming = False
    if span.start + span.done < span.end and unlimited and job.limiter.limited:
        # A limit began: the rest comes through a request with the limit's small buffer.
        await fetch_span(job, span, lane)
        return
    if span.start + span.done < span.end:
        # The body ended early (truncated, or a shorter range than asked): ask for the rest.
        error = _Progressed if wrote else TransientError
        raise error(f"body ended at byte {span.start + span.done} of range ending {span.end}")


def _read_buffer(job: RangeJob) -> int | None:
    """Under a rate limit, aiohttp's own 64 KiB: what a connection buffers past the limiter
    (twice this) reaches the network as a burst the limit did not allow, and with the larger
    session default (Settings.read_buffer says why it is larger) a limit of a few MiB/s
    overshot by a fifth over a second. A limit that begins while a range streams through
    the large buffer (a worker reads the limits just after its first requests, or
    ``modelhaul limit`` is run) ends that request; the rest is asked for again."""
    return min(LIMITED_READ_BUFFER, job.read_buffer) if job.limiter.limited else None


def _resource(job: RangeJob, lane: Lane | None) -> Resource:
    mirror = lane.mirror if lane is not None else None
    return mirror.resource if mirror is not None else job.resource


def _expected(job: RangeJob, lane: Lane | None) -> Expected:
    """What the response must say: the file's size, and the validators of the URL asked
    (each mirror has its own, as its probe gave them)."""
    mirror = lane.mirror if lane is not None else None
    if mirror is None:
        return job.expected
    v = mirror.validators
    return Expected(job.expected.size, v.etag, v.last_modified, v.if_range)


def _validated(expected: Expected, response: aiohttp.ClientResponse) -> Expected:
    """What every later request of an unprobed file must find: the validators of the
    response that stood in for its probe (sent as ``If-Range``, compared as a probe's)."""
    etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
    return Expected(expected.size, etag, modified, if_range_value(etag, modified))


def _check_stand_in(expected: Expected, response: aiohttp.ClientResponse, start: int) -> None:
    """What a probe would have learnt must hold: ranges (a 206) and the published size."""
    if response.status != 206:
        raise ProbeNeeded(f"a range request was answered with HTTP {response.status}")
    cr = parse_content_range(response.headers.get("Content-Range"))
    if cr is None or cr.start != start or cr.total != expected.size:
        raise ProbeNeeded(f"Content-Range {response.headers.get('Content-Range')!r}")


def _check(expected: Expected, url: str, response: aiohttp.ClientResponse, start: int) -> None:
    if expected.stand_in:
        _check_stand_in(expected, response, start)
        return
    etag = response.headers.get("ETag")
    if response.status == 200:
        if expected.etag and etag == expected.etag and not expected.etag.startswith("W/"):
            # Same strong validator, so the file is the same: this server (or a proxy)
            # ignored our Range header. Drop this response and ask again.
            raise TransientError("the server ignored the Range header (200 with the same ETag)")
        asked = "a range request with If-Range" if expected.if_range else "a range request"
        raise RemoteChangedError(url, f"{asked} was answered in full (200)")
    if response.status != 206:
        raise TransientError(f"unexpected HTTP {response.status} to a range request")
    if expected.etag and etag and etag != expected.etag:
        raise RemoteChangedError(url, f"ETag {expected.etag} became {etag}")
    modified = response.headers.get("Last-Modified")
    if not expected.etag and expected.last_modified and modified != expected.last_modified:
        raise RemoteChangedError(url, f"Last-Modified {expected.last_modified} became {modified}")
    cr = parse_content_range(response.headers.get("Content-Range"))
    if cr is None or cr.start is None:
        raise TransientError(f"206 without a usable Content-Range: {cr}")
    if cr.total is not None and cr.total != expected.size:
        raise RemoteChangedError(url, f"size {expected.size} became {cr.total}")
    if cr.start != start:
        # Same file (same total and validator) but not the bytes we asked for: a broken
        # answer, not a changed file. Refuse it rather than write bytes at the wrong place.
        raise TransientError(f"asked for bytes from {start}, got Content-Range {cr.start}-{cr.end}")


async def fetch_whole(job: RangeJob, span: Span) -> None:
    """The fallback for servers without ranges (or without a size): one plain GET of the
    whole file into ``span`` (which starts empty at 0). Any failure means starting over."""
    async with job.resource.get({}, read_buffer=_read_buffer(job)) as response:
        if response.status != 200:
            raise TransientError(f"unexpected HTTP {response.status} to a plain GET")
        try:
            await stream_into(job, span, response, final_at_eof=True)
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise TransientError(f"{type(e).__name__}: {e or 'connection lost'}") from e


async def stream_into(
    job: RangeJob,
    span: Span,
    response: aiohttp.ClientResponse,
    *,
    final_at_eof: bool = False,
    lane: Lane | None = None,
    until_limited: bool = False,
) -> int:
    """Write the body into the span as it arrives; returns the bytes written.

    Received pieces are gathered up to ``job.write_size`` and written in one thread hop
    (``pwritev``), so a connection holds at most that much plus one network read, and the
    span's running XXH3 yields a digest as each block completes. On a slow connection they
    wait at most ``job.write_seconds``: only written bytes reach a checkpoint, and bytes
    held back are what a kill costs. With ``final_at_eof`` (a stream of unknown length) the
    end of the body ends the last block. With ``until_limited`` it stops early (what it
    holds written) once a rate limit holds these bytes back.
    """
    wrote = 0
    pending: list[memoryview] = []
    buffered = 0
    since = 0.0  # when the oldest pending piece arrived
    async for data in response.content.iter_any():
        # Through the limiter first, then counted: what the network buffered while we
        # waited (up to twice the read buffer per connection) is shown, and shared in a
        # fleet's limits, at the rate it is let through, not as a burst.
        await job.limiter.take(len(data))
        job.on_received(len(data))
        if lane is not None:
            lane.received += len(data)
            if lane.mirror is not None:
                lane.mirror.received += len(data)
        at = span.start + span.done + buffered
        if at >= span.end:  # another worker took the rest of this span
            break
        view = memoryview(data)[: span.end - at]
        if not pending:
            since = time.monotonic()
        pending.append(view)
        buffered += len(view)
        span.pos = at + len(view)
        if (
            buffered >= job.write_size
            or span.pos >= span.end
            or time.monotonic() - since >= job.write_seconds
        ):
            wrote += await _flush(job, span, pending, buffered, lane)
            pending, buffered = [], 0
            if span.start + span.done >= span.end:
                return wrote
        if until_limited and job.limiter.limited:
            break
    if pending:
        wrote += await _flush(job, span, pending, buffered, lane)
    if final_at_eof and span.done % job.block:
        span.digests += span.hasher.digest()
        span.hasher.reset()
        span.tail = b""
        span.end = span.start + span.done
    return wrote


async def _flush(
    job: RangeJob, span: Span, pending: list[memoryview], length: int, lane: Lane | None = None
) -> int:
    at = span.start + span.done
    length = min(length, span.end - at)  # the span may have been cut short meanwhile
    digests = await job.part.write(at, _clip(pending, length), span.hasher, job.block, span.end)
    for digest in digests:
        span.digests += digest
    span.done += length
    span.wrote(job.block)
    if lane is not None and lane.mirror is not None:
        span.served(at, lane.mirror.url)
    job.on_written(length)
    return length


def _clip(views: list[memoryview], length: int) -> list[memoryview]:
    out = []
    for view in views:
        if length <= 0:
            break
        out.append(view[:length])
        length -= len(out[-1])
    return out
