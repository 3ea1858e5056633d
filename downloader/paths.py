"""Destinations: where a download lands, checked before anything is queued."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from downloader.errors import DestinationError


def filename_from_url(url: str) -> str:
    """The last path segment of ``url``, decoded; ``download`` when there is none."""
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    return name if name not in ("", ".", "..") else "download"


def file_destination(dest: str | os.PathLike[str] | None, default_dir: Path, name: str) -> Path:
    """The file path for a download named ``name``: ``dest`` itself, or ``name`` inside it when
    it is a folder (existing, or written with a trailing slash), or inside ``default_dir``."""
    if dest is None:
        return (default_dir / name).absolute()
    text = os.fspath(dest)
    path = Path(text).expanduser()
    if text.endswith(("/", os.sep)) or path.is_dir():
        return (path / name).absolute()
    return path.absolute()


def check_writable(path: Path, *, folder: bool = False) -> None:
    """Raise ``DestinationError`` unless ``path`` can be created and written: a file (its
    folder must be writable), or with ``folder`` a folder of files (blocking I/O)."""
    if folder:
        if path.exists() and not path.is_dir():
            raise DestinationError(f"destination {path} is a file, not a folder")
        _check_folder(path, path)
        return
    if path.is_dir():
        raise DestinationError(f"destination {path} is a folder, not a file path")
    _check_folder(path, path.parent)


def _check_folder(path: Path, folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DestinationError(
            f"cannot use {path} as a destination: cannot create folder {folder}: {e.strerror or e}"
        ) from e
    try:
        fd, probe = tempfile.mkstemp(prefix=".modelhaul-", dir=folder)
    except OSError as e:
        raise DestinationError(
            f"cannot use {path} as a destination: folder {folder} is not writable: "
            f"{e.strerror or e}"
        ) from e
    os.close(fd)
    os.unlink(probe)
