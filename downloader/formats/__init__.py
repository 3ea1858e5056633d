"""Model file formats: read a file's header (never its data) and check a model's files
together. ``inspect_files`` is what verification runs."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from downloader.errors import FormatError
from downloader.formats.gguf import GGUFInfo, read_gguf
from downloader.formats.safetensors import SafetensorsInfo, read_safetensors
from downloader.formats.shards import check_index, check_split_gguf


def sniff(path: Path, name: str | None = None) -> str | None:
    """The format of a file: "gguf", "safetensors" or None. By ``name`` (else the path's: a
    Hugging Face blob has none), else, for Ollama's nameless blobs, by magic."""
    name = name or path.name
    if name.endswith(".gguf"):
        return "gguf"
    if name.endswith(".safetensors"):
        return "safetensors"
    if "." not in name:
        try:
            with path.open("rb") as f:
                if f.read(4) == b"GGUF":
                    return "gguf"
        except OSError:
            return None
    return None


def inspect_file(path: Path, name: str | None = None) -> GGUFInfo | SafetensorsInfo | None:
    """The parsed header of a model file (None for other files). Raises ``FormatError``."""
    kind = sniff(path, name)
    if kind == "gguf":
        return read_gguf(path)
    if kind == "safetensors":
        return read_safetensors(path)
    return None


def inspect_files(
    files: Iterable[tuple[str, Path]], *, complete: bool
) -> dict[str, dict[str, Any]]:
    """Check every model file of a download (``(relative path, local path)`` pairs) and the
    model they make together; returns a summary per model file. Blocking (header reads
    only). ``complete``: the files are the whole model (a repo), so shards must all be here.
    Raises ``FormatError`` naming the file and the problem."""
    files = list(files)
    headers: dict[str, GGUFInfo | SafetensorsInfo] = {}
    for relpath, local in files:
        try:
            info = inspect_file(local, PurePosixPath(relpath).name)
        except FormatError as e:
            # "not a valid GGUF: why" → "not a valid GGUF: model.gguf: why"
            kind, _, why = str(e).partition(": ")
            raise FormatError(f"{kind}: {relpath}: {why}") from None
        if info is not None:
            headers[relpath] = info
    check_split_gguf(
        {p: i for p, i in headers.items() if isinstance(i, GGUFInfo)}, complete=complete
    )
    shards = {p: i for p, i in headers.items() if isinstance(i, SafetensorsInfo)}
    for relpath, local in files if complete else ():
        # An index fetched alone (a glob such as *.json matched it) is a JSON file like any
        # other; with any of its shards here, it is a model that must be whole.
        if relpath.endswith(".safetensors.index.json") and shards:
            check_index(relpath, local, shards)
    return {p: i.summary() for p, i in headers.items()}


__all__ = [
    "GGUFInfo",
    "SafetensorsInfo",
    "inspect_file",
    "inspect_files",
    "read_gguf",
    "read_safetensors",
    "sniff",
]
