"""Write small but real model files: GGUF (v3) and safetensors, with random weights.

For the demo, the tests and the benchmarks: the files parse with the official readers
(``gguf``, ``safetensors``), so validation has real headers to read.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

GGUF_MAGIC = b"GGUF"
ALIGNMENT = 32
# GGUF metadata value types
UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64 = 4, 5, 6, 7, 8, 9, 10
GGML_F32 = 0


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _value(value: Any) -> bytes:
    if isinstance(value, bool):
        return struct.pack("<I?", BOOL, value)
    if isinstance(value, int):
        return (
            struct.pack("<IQ", UINT64, value)
            if value > 0xFFFFFFFF
            else struct.pack("<II", UINT32, value)
        )
    if isinstance(value, float):
        return struct.pack("<If", FLOAT32, value)
    if isinstance(value, str):
        return struct.pack("<I", STRING) + _string(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return struct.pack("<IIQ", ARRAY, STRING, len(value)) + b"".join(_string(v) for v in value)
    raise TypeError(f"no GGUF encoding for {value!r}")


def gguf_bytes(
    *,
    size: int,
    architecture: str = "llama",
    name: str = "demo-model",
    context_length: int = 4096,
    file_type: int = 0,
    extra: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> bytes:
    """A GGUF v3 file of about ``size`` bytes (small ones too): metadata and F32 tensors of
    random data."""
    return b"".join(_gguf(size, architecture, name, context_length, file_type, extra, seed))


def write_gguf(path: Path, *, size: int, seed: int = 0, **options: Any) -> Path:
    """``gguf_bytes`` written to ``path`` piece by piece (for large files)."""
    with path.open("wb") as f:
        for piece in _gguf(
            size,
            options.get("architecture", "llama"),
            options.get("name", "demo-model"),
            options.get("context_length", 4096),
            options.get("file_type", 0),
            options.get("extra"),
            seed,
        ):
            f.write(piece)
    return path


def _tensor_sizes(size: int) -> list[int]:
    tensor_bytes = 4 << 20 if size >= 16 << 20 else 256 << 10
    sizes = [tensor_bytes] * (size // tensor_bytes)
    rest = size % tensor_bytes // 128 * 128  # whole rows of 32 F32 elements
    if rest or not sizes:
        sizes.append(rest or 128)
    return sizes


def split_gguf(stem: str, sizes: Sequence[int], *, seed: int = 0) -> dict[str, bytes]:
    """``STEM-0000i-of-0000N.gguf`` parts as llama.cpp's gguf-split writes them: each with
    ``split.no``, ``split.count`` and ``split.tensors.count``."""
    tensors = sum(len(_tensor_sizes(n)) for n in sizes)
    return {
        f"{stem}-{i + 1:05d}-of-{len(sizes):05d}.gguf": gguf_bytes(
            size=n,
            seed=seed + i,
            extra={"split.no": i, "split.count": len(sizes), "split.tensors.count": tensors},
        )
        for i, n in enumerate(sizes)
    }


def _gguf(
    size: int,
    architecture: str,
    name: str,
    context_length: int,
    file_type: int,
    extra: Mapping[str, Any] | None,
    seed: int,
) -> Iterator[bytes]:
    rng = random.Random(seed)
    sizes = _tensor_sizes(size)
    metadata: dict[str, Any] = {
        "general.architecture": architecture,
        "general.name": name,
        "general.file_type": file_type,
        f"{architecture}.context_length": context_length,
        f"{architecture}.embedding_length": 256,
        f"{architecture}.block_count": len(sizes),
        **(extra or {}),
    }
    head = bytearray(GGUF_MAGIC + struct.pack("<IQQ", 3, len(sizes), len(metadata)))
    for key, value in metadata.items():
        head += _string(key) + _value(value)
    offset = 0
    for i, n in enumerate(sizes):
        head += _string(f"blk.{i}.weight") + struct.pack("<IQ", 1, n // 4)
        head += struct.pack("<IQ", GGML_F32, offset)
        offset += n + (-n % ALIGNMENT)
    head += b"\0" * (-len(head) % ALIGNMENT)
    yield bytes(head)
    for n in sizes:
        yield rng.randbytes(n) + b"\0" * (-n % ALIGNMENT)


def safetensors_bytes(
    tensors: Mapping[str, Sequence[int]],
    *,
    metadata: Mapping[str, str] | None = None,
    seed: int = 0,
) -> bytes:
    """A safetensors file with F32 tensors of the given shapes and random data."""
    return b"".join(_safetensors(tensors, metadata, seed))


def write_safetensors(
    path: Path,
    tensors: Mapping[str, Sequence[int]],
    *,
    metadata: Mapping[str, str] | None = None,
    seed: int = 0,
) -> Path:
    """``safetensors_bytes`` written to ``path`` piece by piece."""
    with path.open("wb") as f:
        for piece in _safetensors(tensors, metadata, seed):
            f.write(piece)
    return path


def _safetensors(
    tensors: Mapping[str, Sequence[int]], metadata: Mapping[str, str] | None, seed: int
) -> Iterator[bytes]:
    rng = random.Random(seed)
    header: dict[str, Any] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for name, shape in tensors.items():
        length = 4
        for dim in shape:
            length *= dim
        header[name] = {
            "dtype": "F32",
            "shape": list(shape),
            "data_offsets": [offset, offset + length],
        }
        offset += length
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    yield struct.pack("<Q", len(raw)) + raw
    left = offset
    while left:
        n = min(left, 16 << 20)
        yield rng.randbytes(n)
        left -= n


def write_sharded_safetensors(
    folder: Path, *, shards: int, shard_size: int, seed: int = 0
) -> list[Path]:
    """``model-0000i-of-0000N.safetensors`` shards, their index and a config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    written = []
    rows = shard_size // (4 * 1024)
    for i in range(1, shards + 1):
        name = f"model-{i:05d}-of-{shards:05d}.safetensors"
        tensor = f"layers.{i - 1}.weight"
        written.append(write_safetensors(folder / name, {tensor: (rows, 1024)}, seed=seed + i))
        weight_map[tensor] = name
    index = {"metadata": {"total_size": shards * rows * 4096}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 1024}))
    return written
