"""Which bytes of a file a request asks for: its ``Range`` and ``If-Range`` headers read
against the file's size and strong ETag (RFC 9110, section 14).

One range per request: peers ask for one, and a list of many small or overlapping ranges
is the classic way to make a server work for nothing, so it is refused (416) rather than
answered with a multipart body. A range unit other than ``bytes`` is ignored, as the RFC
says it must be; an ``If-Range`` that is not our ETag (a date, a weak or another ETag)
means the client's copy is not ours, so the whole file is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Far longer than any one range anyone sends; beyond this only an attack.
MAX_HEADER = 200
# ASCII digits only: \d and int() also take other scripts' digits.
_SPEC = re.compile(r"(?P<first>[0-9]{1,40})?-(?P<last>[0-9]{1,40})?")


@dataclass(frozen=True, slots=True)
class Span:
    """The bytes to send: ``count`` bytes from ``start``; ``partial`` for a 206."""

    start: int
    count: int
    partial: bool

    def content_range(self, size: int) -> str:
        """The ``Content-Range`` value of a 206 for a file of ``size`` bytes."""
        return f"bytes {self.start}-{self.start + self.count - 1}/{size}"


class RangeNotSatisfiable(ValueError):
    """A ``Range`` this server will not answer (416), with why."""


def requested_span(range_header: str | None, if_range: str | None, size: int, etag: str) -> Span:
    """The span of a file of ``size`` bytes to send; ``RangeNotSatisfiable`` naming why a
    range cannot be."""
    whole = Span(0, size, partial=False)
    if range_header is None or (if_range is not None and if_range.strip() != etag):
        return whole
    if len(range_header) > MAX_HEADER:
        raise RangeNotSatisfiable(f"the Range header is longer than {MAX_HEADER} characters")
    unit, equals, ranges = range_header.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return whole  # a unit we do not know: RFC 9110 says to ignore the header
    specs = [s.strip() for s in ranges.split(",")]
    if len(specs) != 1:
        raise RangeNotSatisfiable("only one byte range per request is served")
    match = _SPEC.fullmatch(specs[0])
    if match is None or (match["first"] is None and match["last"] is None):
        raise RangeNotSatisfiable(f"not a byte range: {specs[0][:40]!r}")
    if match["first"] is None:  # "-N": the last N bytes
        suffix = int(match["last"])
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(f"the last {suffix} bytes of a {size}-byte file")
        start = max(0, size - suffix)
        return Span(start, size - start, partial=True)
    first = int(match["first"])
    if match["last"] is not None and int(match["last"]) < first:
        raise RangeNotSatisfiable(f"not a byte range: {specs[0][:40]!r} ends before it starts")
    if first >= size:
        raise RangeNotSatisfiable(f"the file has {size} bytes; the range starts at {first}")
    last = size - 1 if match["last"] is None else min(int(match["last"]), size - 1)
    return Span(first, last - first + 1, partial=True)
