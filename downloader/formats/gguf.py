"""The GGUF header: magic, version, tensor and metadata counts, metadata, tensor infos.

Only the header is read (the tensor infos say where the data is; the data is checked for
size, alignment and overlap, never read). Arrays in metadata (a tokenizer's vocabulary) are
walked but only short ones are kept.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from downloader.formats.reader import HeaderReader

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 8  # ggml's GGML_MAX_DIMS is 4; anything beyond a few is garbage
KEPT_ARRAY = 16  # arrays longer than this are summarized, not kept
# Bounds that every real file is far inside, so a hostile header costs an error in well
# under a second, never a walk over a count it claims or memory for a length it claims.
# Real files: tens of metadata entries, up to ~20,000 tensors (unmerged MoE experts),
# ~1,000,000 strings in arrays (a 262k vocabulary and its merges), names under 100 bytes.
MAX_METADATA = 1 << 16
MAX_TENSORS = 1 << 18
MAX_ARRAY_STRINGS = 1 << 23  # in all the header's string arrays together (time)
MAX_NAME = 1 << 16  # bytes of a key or a tensor name (ggml's own limit for names is 64)
KEPT_STRING = 1 << 20  # longer string values (tokenizer.huggingface.json) are skipped
MAX_KEPT = 64 << 20  # bytes of keys, names and values kept from one header in all

# value type → struct format of a scalar
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
STRING, ARRAY = 8, 9

# ggml tensor type → (block size in elements, bytes per block), as ggml's type traits;
# tests check this table against the gguf package's GGML_QUANT_SIZES.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36),
    41: ("Q1_0", 128, 18),
}

# general.file_type (llama.cpp's LLAMA_FTYPE) → the quantization people name files by
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE",
}  # fmt: skip


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # from the start of the data section
    nbytes: int


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF header says."""

    version: int
    tensor_count: int
    metadata: dict[str, Any]
    tensors: tuple[Tensor, ...] = field(repr=False)
    data_offset: int
    file_size: int

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None

    @property
    def name(self) -> str | None:
        value = self.metadata.get("general.name")
        return value if isinstance(value, str) else None

    @property
    def context_length(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return value if isinstance(value, int) else None

    @property
    def parameter_count(self) -> int:
        return sum(math.prod(t.shape) for t in self.tensors)

    @property
    def quantization(self) -> str | None:
        """From ``general.file_type``, else the most common tensor type."""
        file_type = self.metadata.get("general.file_type")
        if isinstance(file_type, int) and file_type in FILE_TYPES:
            return FILE_TYPES[file_type]
        counts: dict[int, int] = {}
        for t in self.tensors:
            counts[t.ggml_type] = counts.get(t.ggml_type, 0) + t.nbytes
        if not counts:
            return None
        return GGML_TYPES[max(counts, key=counts.__getitem__)][0]

    @property
    def split(self) -> tuple[int, int, int] | None:
        """(this part's 0-based number, parts, tensors in all parts) of a split GGUF."""
        keys = ("split.no", "split.count", "split.tensors.count")
        values = [self.metadata.get(k) for k in keys]
        if all(isinstance(v, int) for v in values):
            return values[0], values[1], values[2]  # type: ignore[return-value]
        return None

    def summary(self) -> dict[str, Any]:
        """The fields ``show`` and ``cache ls`` print."""
        return {
            "format": "gguf",
            "version": self.version,
            "architecture": self.architecture,
            "name": self.name,
            "context_length": self.context_length,
            "quantization": self.quantization,
            "parameters": self.parameter_count,
            "tensors": self.tensor_count,
        }


def read_gguf(path: Path) -> GGUFInfo:
    """Parse and check ``path``'s header; ``FormatError`` ("not a valid GGUF: …") if it is
    truncated, garbled or inconsistent. Reads only the header, in bounded time and memory.
    What it accepts, the official ``gguf`` reader (and llama.cpp) read the same way: no
    key or tensor name twice, ``general.alignment`` a u32 power of two."""
    with path.open("rb") as f:
        size = path.stat().st_size
        r = HeaderReader(f, size, "GGUF", budget=MAX_KEPT, items=MAX_ARRAY_STRINGS)
        magic = r.read(4, "the magic") if size >= 4 else b""
        if magic != MAGIC:
            raise r.fail(f"it starts with {(magic or b'')[:4]!r}, not b'GGUF'")
        version = r.u32("the version")
        if version not in (2, 3):
            raise r.fail(f"version {version} is not supported (only 2 and 3)")
        tensor_count = r.u64("the tensor count")
        kv_count = r.u64("the metadata count")
        # Each metadata entry takes at least 12 bytes, each tensor info at least 28.
        if kv_count * 12 > size or tensor_count * 28 > size:
            raise r.fail(
                f"it claims {kv_count} metadata entries and {tensor_count} tensors, more than "
                f"{size} bytes can hold"
            )
        if kv_count > MAX_METADATA or tensor_count > MAX_TENSORS:
            raise r.fail(
                f"it claims {kv_count} metadata entries and {tensor_count} tensors (the limits "
                f"are {MAX_METADATA} and {MAX_TENSORS})"
            )
        metadata, alignment = _metadata(r, kv_count)
        tensors = _tensor_infos(r, tensor_count)
        data_offset = r.pos + (-r.pos % alignment)
        _check_data(r, tensors, data_offset, alignment)
        return GGUFInfo(version, tensor_count, metadata, tuple(tensors), data_offset, size)


def _metadata(r: HeaderReader, count: int) -> tuple[dict[str, Any], int]:
    """``count`` key/value pairs, and the data alignment they set."""
    metadata: dict[str, Any] = {}
    alignment = DEFAULT_ALIGNMENT
    for i in range(count):
        key = _name(r, f"metadata key {i}")
        if key in metadata:  # ggml and the gguf package refuse it too: which one is meant?
            raise r.fail(f"metadata key {key!r} appears twice")
        value_type = r.u32(f"the type of {key!r}")
        metadata[key] = value = _value(r, value_type, key)
        if key == "general.alignment":
            # A u32, as ggml reads it (gguf_get_val_u32) and the gguf package demands.
            if value_type != 4 or value <= 0 or value & (value - 1):
                raise r.fail(f"general.alignment {value!r} is not a u32 power of two")
            alignment = value
    return metadata, alignment


def _tensor_infos(r: HeaderReader, count: int) -> list[Tensor]:
    tensors: list[Tensor] = []
    names: set[str] = set()
    for i in range(count):
        tensor = _tensor_info(r, i)
        if tensor.name in names:
            raise r.fail(f"tensor {tensor.name!r} is named twice")
        names.add(tensor.name)
        tensors.append(tensor)
    return tensors


def _name(r: HeaderReader, what: str) -> str:
    """A key or a tensor name: a string that is kept, so bounded."""
    n = r.u64(f"the length of {what}")
    if n > MAX_NAME:
        r.need(n, what)  # a length past the end says "truncated", the likelier story
        raise r.fail(f"{what} is {n} bytes long (the limit is {MAX_NAME})")
    return _utf8(r, r.read(n, what), what)


def _utf8(r: HeaderReader, raw: bytes, what: str, errors: str = "strict") -> str:
    try:
        return raw.decode("utf-8", errors)
    except UnicodeDecodeError:
        raise r.fail(f"{what} is not UTF-8") from None


def _string_value(r: HeaderReader, what: str, errors: str = "strict") -> str | _Skipped:
    """A string value: kept up to ``KEPT_STRING`` bytes, else walked past and summarized.
    Items of arrays (tokens) may be any bytes: ggml keeps them as bytes."""
    n = r.u64(f"the length of {what}")
    if n > KEPT_STRING:
        r.skip(n, what)
        return _Skipped(f"a string of {n} bytes")
    return _utf8(r, r.read(n, what), what, errors)


def _value(r: HeaderReader, value_type: int, key: str) -> Any:
    if value_type in _SCALARS:
        return r.unpack(_SCALARS[value_type], f"the value of {key!r}")[0]
    if value_type == STRING:
        return _string_value(r, f"the value of {key!r}")
    if value_type == ARRAY:
        item_type = r.u32(f"the item type of {key!r}")
        count = r.u64(f"the length of {key!r}")
        if item_type in _SCALARS:
            width = _width(item_type)
            r.need(count * width, f"the {count} items of {key!r}")
            if count > KEPT_ARRAY:
                r.skip(count * width, f"the items of {key!r}")
                return _Summary(item_type, count)
            return [r.unpack(_SCALARS[item_type], f"an item of {key!r}")[0] for _ in range(count)]
        if item_type == STRING:
            r.need(count * 8, f"the {count} strings of {key!r}")
            r.walk(count, f"the strings of {key!r}")
            kept = [
                _string_value(r, f"item {i} of {key!r}", errors="replace")
                for i in range(min(count, KEPT_ARRAY))
            ]
            r.skip_strings(count - len(kept), f"the strings of {key!r}")
            return kept if count <= KEPT_ARRAY else _Summary(item_type, count)
        raise r.fail(f"{key!r} is an array of type {item_type}, which GGUF does not define")
    raise r.fail(f"{key!r} has value type {value_type}, which GGUF does not define")


def _width(value_type: int) -> int:
    return struct.calcsize("<" + _SCALARS[value_type])


@dataclass(frozen=True)
class _Summary:
    """A long array, kept as its type and length."""

    item_type: int
    count: int

    def __repr__(self) -> str:
        return f"[{self.count} items]"


@dataclass(frozen=True)
class _Skipped:
    """A string value too long to keep (a whole tokenizer.json), kept as what it was."""

    what: str

    def __repr__(self) -> str:
        return f"<{self.what}>"


def _tensor_info(r: HeaderReader, i: int) -> Tensor:
    name = _name(r, f"the name of tensor {i}")
    n_dims = r.u32(f"the dimension count of {name!r}")
    if not 1 <= n_dims <= MAX_DIMS:
        raise r.fail(f"tensor {name!r} has {n_dims} dimensions")
    shape = tuple(r.u64(f"a dimension of {name!r}") for _ in range(n_dims))
    ggml_type = r.u32(f"the type of {name!r}")
    offset = r.u64(f"the offset of {name!r}")
    if ggml_type not in GGML_TYPES:
        raise r.fail(f"tensor {name!r} has ggml type {ggml_type}, which is not known")
    type_name, block, block_bytes = GGML_TYPES[ggml_type]
    elements = math.prod(shape)
    if elements == 0 or elements > r.size * 8:  # no real type packs 8 elements in a bit
        raise r.fail(f"tensor {name!r} has shape {list(shape)}")
    if shape[0] % block:
        raise r.fail(
            f"tensor {name!r} ({type_name}) has a row of {shape[0]}, not a multiple of {block}"
        )
    return Tensor(name, shape, ggml_type, offset, elements // block * block_bytes)


def _check_data(r: HeaderReader, tensors: list[Tensor], start: int, alignment: int) -> None:
    end_of_previous, previous = 0, None
    for t in sorted(tensors, key=lambda t: t.offset):
        if t.offset % alignment:
            raise r.fail(f"tensor {t.name!r} starts at {t.offset}, not aligned to {alignment}")
        if t.offset < end_of_previous:
            raise r.fail(f"tensors {previous!r} and {t.name!r} overlap")
        end = start + t.offset + t.nbytes
        if end > r.size:
            raise r.fail(
                f"tensor {t.name!r} ends at byte {end} but the file has {r.size} bytes (truncated?)"
            )
        end_of_previous, previous = t.offset + t.nbytes, t.name
