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

# The header is JSON, which Python holds at up to 30 times its size when it is hostile
# (100 MB of "[{},{},..." took 2.4 GB and 8 s; 25 MB takes 0.7 GB and 2-5 s). The
# safetensors library allows 100 MB; the Hub's client (huggingface_hub's
# SAFETENSORS_MAX_HEADER_LENGTH) reads 25 MB at most, and real headers, a few thousand
# tensors, are a few MB.
MAX_HEADER = 25_000_000
MAX_DIMS = 64  # numpy's and PyTorch's limit: no tensor anyone can load has more
# Bytes of a model.safetensors.index.json (real ones: under 10 MB); the same ceiling as
# the sources' INDEX_LIMIT, so an index a source fetched never fails verification for size.
MAX_INDEX = 32 << 20
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
    …") when it is truncated, garbled or inconsistent. What it accepts, the safetensors
    library reads the same way: no tensor named twice, shapes and offsets whole numbers
    below 2**64, the data covered exactly."""
    with path.open("rb") as f:
        size = path.stat().st_size
        r = HeaderReader(f, size, "safetensors file", budget=MAX_HEADER)
        n = r.u64("the header length")
        if n > MAX_HEADER:
            raise r.fail(f"a header of {n} bytes (the limit is {MAX_HEADER})")
        raw = r.read(n, "the header")
    header = _json_object(r, raw)
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
        # Stop multiplying once past the data: a shape of a million 2s is refused at once.
        elements = _product(shape, limit=data_size * 8 + 1)
        if elements > data_size * 8:
            raise r.fail(
                f"tensor {name!r} has shape {_shown(shape)}: more elements than "
                f"{data_size} bytes of data can hold"
            )
        nbits = elements * bits
        if nbits % 8:  # the library refuses a tensor that ends inside a byte
            raise r.fail(f"tensor {name!r} ({dtype} {list(shape)}) does not fill whole bytes")
        if end - begin != nbits // 8:
            raise r.fail(
                f"tensor {name!r} ({dtype} {list(shape)}) needs {nbits // 8} bytes but "
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


def _json_object(r: HeaderReader, raw: bytes) -> dict[str, Any]:
    """The header as a JSON object, read as strictly as the safetensors library reads it:
    UTF-8 only, starting with "{", no NaN or Infinity, no key given twice (readers would
    disagree on which one counts). Nesting past what the parser can recurse and numbers of
    thousands of digits are errors too."""
    if not raw.startswith(b"{"):
        raise r.fail("the header is not a JSON object")
    try:
        header = json.loads(
            raw.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constant
        )
    except UnicodeDecodeError:
        raise r.fail("the header is not UTF-8") from None
    except _DuplicateKeyError as e:
        raise r.fail(f"{e.key!r} is named twice in the header") from None
    except RecursionError:
        raise r.fail("the header is not JSON (nested too deep)") from None
    except ValueError as e:  # JSONDecodeError, NaN, a number of 5000 digits
        raise r.fail(f"the header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise r.fail("the header is not a JSON object")
    return header


class _DuplicateKeyError(Exception):
    """A JSON object with a key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _shown(shape: list[Any] | tuple[Any, ...]) -> str:
    return repr(list(shape)) if len(shape) <= 8 else f"of {len(shape)} dimensions"


def _product(shape: tuple[int, ...], *, limit: int) -> int:
    """The number of elements of ``shape``, or ``limit`` if it is at least that."""
    product = 1
    for dim in shape:
        product *= dim
        if product >= limit:
            return 0 if 0 in shape else limit
    return product


def _entry(r: HeaderReader, name: str, entry: Any) -> tuple[str, tuple[int, ...], int, int]:
    if not isinstance(entry, dict):
        raise r.fail(f"the entry of {name!r} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str):
        raise r.fail(f"tensor {name!r} has no dtype")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(map(_natural, shape)):
        shown = _shown(shape) if isinstance(shape, list) else repr(shape)
        raise r.fail(f"tensor {name!r} has shape {shown}, not a list of whole numbers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_natural(o) for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise r.fail(f"tensor {name!r} has data_offsets {offsets!r}")
    return dtype, tuple(shape), offsets[0], offsets[1]


def _natural(value: Any) -> bool:
    """A whole number the library can hold (usize: below 2**64)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 64
