"""Destinations: where a download lands, checked before anything is queued; and the one
function that turns a name that came from outside (a hub's file list, a manifest, a request)
into a local path."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from downloader.errors import DestinationError, UnsafePathError

MAX_COMPONENT_BYTES = 255  # NAME_MAX on every filesystem we write to
MAX_PATH_BYTES = 4000  # under PATH_MAX (4096) with room for the root
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")


def check_relpath(name: object, *, what: str = "file name") -> tuple[str, ...]:
    """The segments of ``name`` if it can only ever be a relative path below a folder;
    otherwise ``UnsafePathError`` naming ``what`` and the reason.

    Refused: anything not a string; empty names; absolute or drive paths (``/x``, ``C:x``);
    backslashes (a separator elsewhere); NUL and control characters; empty, ``.`` or ``..``
    segments; a segment over 255 bytes or a whole over 4000 bytes in UTF-8.
    """
    if not isinstance(name, str):
        raise UnsafePathError(what, repr(name), f"is of type {type(name).__name__}, not a string")
    if not name:
        raise UnsafePathError(what, name, "is empty")
    if _CONTROL.search(name):
        raise UnsafePathError(what, name, "contains a NUL or control character")
    if "\\" in name:
        raise UnsafePathError(what, name, "contains a backslash")
    if name.startswith("/") or _DRIVE.match(name):
        raise UnsafePathError(what, name, "is an absolute path")
    try:
        encoded = name.encode()
    except UnicodeEncodeError:
        raise UnsafePathError(what, name, "is not valid Unicode") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise UnsafePathError(what, name, f"is longer than {MAX_PATH_BYTES} bytes")
    segments = tuple(name.split("/"))
    for segment in segments:
        if segment in ("", ".", ".."):
            shown = segment or "an empty segment"
            raise UnsafePathError(what, name, f"has {shown!r} in it" if segment else f"has {shown}")
        if len(segment.encode()) > MAX_COMPONENT_BYTES:
            raise UnsafePathError(
                what, name, f"has a segment longer than {MAX_COMPONENT_BYTES} bytes"
            )
    return segments


def safe_path(root: Path, name: object, *, what: str = "file name") -> Path:
    """``root / name`` for a ``name`` that came from outside, guaranteed to stay below
    ``root``: the name must pass ``check_relpath``, and the result, with every symlink that
    exists today resolved, must still lie under ``root`` resolved the same way (blocking: it
    reads symlinks). The path returned is the unresolved one, so links inside the root
    (Hugging Face snapshots) keep working."""
    segments = check_relpath(name, what=what)
    path = root.joinpath(*segments)
    base = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != base and not real.startswith(base.rstrip(os.sep) + os.sep):
        raise UnsafePathError(what, str(name), f"leads outside {root} through a symlink")
    return path


def filename_from_url(url: str) -> str:
    """The last path segment of ``url``, decoded; ``download`` when there is none or when
    it could not be a file name (``..``, control characters, too long)."""
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    try:
        check_relpath(name)
    except UnsafePathError:
        return "download"
    return name


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
