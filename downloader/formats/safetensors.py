"""The safetensors header: an 8-byte little-endian length, then that much JSON naming each
tensor's dtype, shape and ``data_offsets``; the data must be covered exactly, without gaps or
overlaps."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from downloader.formats.reader import HeaderReader

MAX_HEADER = 100_000_000  # the safetensors library's own limit
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip


@dataclass(frozen=True)
class SafetensorsInfo:
    """What a safetensors header says."""

    tensors: dict[str, tuple[str, tuple[int, ...]]] = field(repr=False)  # name → dtype, shape
    metadata: dict[str, str]
    header_size: int
    file_size: int

    @property
    def parameter_count(self) -> int:
        return sum(math.prod(shape) for _, shape in self.tensors.values())

    @property
    def dtypes(self) -> list[str]:
        return sorted({dtype for dtype, _ in self.tensors.values()})

    def summary(self) -> dict[str, Any]:
        return {
            "format": "safetensors",
            "tensors": len(self.tensors),
            "parameters": self.parameter_count,
            "dtypes": self.dtypes,
        }


def read_safetensors(path: Path) -> SafetensorsInfo:
    """Parse and check ``path``'s header; ``FormatError`` ("not a valid safetensors file:
    …") when it is truncated, garbled or inconsistent."""
    with path.open("rb") as f:
        size = path.stat().st_size
        r = HeaderReader(f, size, "safetensors file")
        n = r.u64("the header length")
        if n > MAX_HEADER:
            raise r.fail(f"a header of {n} bytes (the limit is {MAX_HEADER})")
        raw = r.read(n, "the header")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise r.fail(f"the header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise r.fail("the header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise r.fail("__metadata__ must map strings to strings")
    data_size = size - 8 - n
    spans: list[tuple[int, int, str]] = []
    tensors = {}
    for name, entry in header.items():
        dtype, shape, begin, end = _entry(r, name, entry)
        bits = DTYPE_BITS.get(dtype)
        if bits is None:
            raise r.fail(f"tensor {name!r} has unknown dtype {dtype!r}")
        want = math.prod(shape) * bits
        if end - begin != (want + 7) // 8:
            raise r.fail(
                f"tensor {name!r} ({dtype} {list(shape)}) needs {(want + 7) // 8} bytes but "
                f"its data_offsets span {end - begin}"
            )
        spans.append((begin, end, name))
        tensors[name] = (dtype, shape)
    covered = 0
    for begin, end, name in sorted(spans):
        if begin != covered:
            problem = "overlaps the tensor before it" if begin < covered else "leaves a gap"
            raise r.fail(f"tensor {name!r} at data offset {begin} {problem}")
        covered = end
    if covered != data_size:
        raise r.fail(
            f"the tensors cover {covered} bytes of data but the file holds {data_size} "
            f"({'truncated' if data_size < covered else 'trailing bytes'})"
        )
    return SafetensorsInfo(tensors, metadata, n, size)


def _entry(r: HeaderReader, name: str, entry: Any) -> tuple[str, tuple[int, ...], int, int]:
    if not isinstance(entry, dict):
        raise r.fail(f"the entry of {name!r} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str):
        raise r.fail(f"tensor {name!r} has no dtype")
    if not isinstance(shape, list) or not all(_natural(d) for d in shape):
        raise r.fail(f"tensor {name!r} has shape {shape!r}, not a list of whole numbers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_natural(o) for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise r.fail(f"tensor {name!r} has data_offsets {offsets!r}")
    return dtype, tuple(shape), offsets[0], offsets[1]


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
