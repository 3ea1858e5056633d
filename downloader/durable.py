"""Durable file operations: what a crash or a power cut may not tear in half.

A write lands atomically (the old file or the new one, never a part), a rename survives a
power cut because its folder is synced, and a whole file's SHA-256 is read the one way. The
engine's ``.part``, the Hugging Face cache and the Ollama store all go through here. Every
function blocks: call it in a thread from async code.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

READ_SIZE = 8 << 20  # bytes read at a time when hashing a whole file


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one, never a
    part: a temporary file beside it, fsync, rename over it, fsync of the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    sync_folder(path.parent)


def rename_durably(src: Path, dest: Path) -> None:
    """Rename ``src`` over ``dest`` atomically and sync the folder, so the new name survives a
    power cut (the caller has already synced the file's own bytes)."""
    os.replace(src, dest)
    sync_folder(dest.parent)


def sync_folder(folder: Path) -> None:
    """fsync a folder, so that a rename or a new name in it survives a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of the whole file at ``path``, read in large pieces."""
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while piece := f.read(READ_SIZE):
            sha.update(piece)
    return sha.hexdigest()
