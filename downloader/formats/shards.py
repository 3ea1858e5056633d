"""Checks across the files of one model: a safetensors index names only shards that are
there (and holding the tensors it maps to them); a split GGUF has every part, each saying
which part it is."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from downloader.errors import FormatError
from downloader.formats.gguf import GGUFInfo
from downloader.formats.safetensors import MAX_INDEX, SafetensorsInfo

SPLIT_GGUF = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


def check_index(
    index_path: str,
    local: Path,
    headers: Mapping[str, SafetensorsInfo],
) -> None:
    """``index_path`` (relative, in the model) against the shards' parsed headers (keyed by
    relative path)."""
    weight_map = _weight_map(index_path, local)
    folder = PurePosixPath(index_path).parent
    for tensor, shard in weight_map.items():
        relpath = str(folder / str(shard)) if str(folder) != "." else str(shard)
        header = headers.get(relpath)
        if header is None:
            raise FormatError(
                f"not a valid safetensors model: {index_path} maps {tensor!r} to {shard}, "
                "which is missing"
            )
        if tensor not in header.tensors:
            raise FormatError(
                f"not a valid safetensors model: {index_path} maps {tensor!r} to {shard}, "
                "which does not hold it"
            )


def _weight_map(index_path: str, local: Path) -> dict[str, Any]:
    """The ``weight_map`` object of an index file, read in bounded memory."""

    def fail(why: str) -> FormatError:
        return FormatError(f"not a valid safetensors index: {index_path}: {why}")

    try:
        with local.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_INDEX:
                raise fail(f"it is {size} bytes, larger than {MAX_INDEX}")
            raw = f.read(size)  # read(n) sets n bytes aside first: n is the real size
    except OSError as e:
        raise fail(e.strerror or str(e)) from None
    try:
        index = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise fail("it is not JSON (nested too deep)") from None
    except ValueError as e:  # not UTF-8, not JSON, a number of 5000 digits
        raise fail(f"it is not JSON ({e})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise fail("it has no weight_map object")
    return weight_map


def check_split_gguf(parts: Mapping[str, GGUFInfo], *, complete: bool) -> None:
    """Each part's split metadata agrees with its name; with ``complete``, every part of
    each split set is present and their tensors add up."""
    sets: dict[tuple[str, int], dict[int, GGUFInfo]] = {}
    for relpath, info in parts.items():
        m = SPLIT_GGUF.match(PurePosixPath(relpath).name)
        if m is None:
            continue
        number, count = int(m["no"]), int(m["count"])
        split = info.split
        if split is None or split[0] != number - 1 or split[1] != count:
            said = f"split.no={split[0]}, split.count={split[1]}" if split else "no split keys"
            raise FormatError(
                f"not a valid GGUF: {relpath} is part {number} of {count} by its name but "
                f"its metadata says {said}"
            )
        key = (str(PurePosixPath(relpath).parent / m["stem"]), count)
        sets.setdefault(key, {})[number] = info
    if not complete:
        return
    for (stem, count), found in sets.items():
        missing = sorted(set(range(1, count + 1)) - set(found))
        if missing:
            names = ", ".join(f"{n:05d}" for n in missing)
            raise FormatError(f"not a valid GGUF: {stem} is missing part(s) {names} of {count}")
        tensors = sum(info.tensor_count for info in found.values())
        declared = {info.split[2] for info in found.values() if info.split}
        if declared != {tensors}:
            raise FormatError(
                f"not a valid GGUF: the {count} parts of {stem} hold {tensors} tensors but "
                f"declare {sorted(declared)}"
            )
