"""Durable file operations: what a crash or a power cut may not tear in half.

A write lands atomically (the old file or the new one, never a part), a rename survives a
power cut because its folder is synced, and a whole file's SHA-256 is read the one way. The
engine's ``.part``, the Hugging Face cache and the Ollama store all go through here. Every
function blocks: call it in a thread from async code.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
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


FICLONE = 0x40049409  # Linux ioctl: make dest share src's extents (btrfs, XFS, bcachefs)


def link_or_copy(src: Path, dest: Path) -> str:
    """Make ``dest`` (which must not exist) hold ``src``'s bytes, as cheaply as the disk
    allows: a hard link on the same filesystem, else a reflink, else a copy (in the kernel
    where it can). Returns which: ``"hard link"``, ``"reflink"`` or ``"copy"``. The new name
    and, for a copy, its bytes are synced; a copy that fails leaves nothing behind."""
    try:
        os.link(src, dest)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
    else:
        sync_folder(dest.parent)
        return "hard link"
    with src.open("rb") as fin, dest.open("xb") as fout:
        try:
            how = _clone_or_copy(fin.fileno(), fout.fileno(), os.fstat(fin.fileno()).st_size)
            os.fsync(fout.fileno())
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
    sync_folder(dest.parent)
    return how


def _clone_or_copy(fin: int, fout: int, size: int) -> str:
    with contextlib.suppress(OSError):
        fcntl.ioctl(fout, FICLONE, fin)
        return "reflink"
    done = 0
    try:
        while done < size:
            n = os.copy_file_range(fin, fout, min(size - done, 1 << 30), done, done)
            if n == 0:
                break
            done += n
    except OSError as e:  # an old kernel or a filesystem without it: copy it ourselves
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    while done < size:
        piece = os.pread(fin, min(READ_SIZE, size - done), done)
        if not piece:
            break
        done += os.pwrite(fout, piece, done)
    return "copy"
