"""The Hugging Face cache layout, as ``huggingface_hub`` reads it::

    <cache>/models--<owner>--<name>/
        blobs/<etag>                         the bytes (etag: LFS sha256, else git blob id)
        blobs/<etag>.incomplete              a blob being fetched
        snapshots/<commit>/<path>   ->  ../../blobs/<etag>   (relative symlinks)
        refs/<revision>                      the commit a branch or tag points to

Files we write here are found by ``hf_hub_download(..., local_files_only=True)`` and
``snapshot_download(..., local_files_only=True)``.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from downloader.durable import write_atomically
from downloader.errors import SourceError, UnsafePathError
from downloader.paths import check_relpath, safe_path

# The shapes huggingface_hub itself insists on: a commit is git's 40-hex id; a blob is named
# by its LFS sha256 (64 hex) or git's blob id (40 hex). Anything else a hub sends is refused
# before it becomes part of a path.
COMMIT = re.compile(r"^[0-9a-f]{40}$")
BLOB_ID = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
PARTIAL_SUFFIX = ".incomplete"  # a blob's bytes until they are whole and checked


def check_commit(commit: object, where: str) -> str:
    """``commit`` if it is a 40-hex commit id, else a ``SourceError`` naming ``where``."""
    if not isinstance(commit, str) or not COMMIT.match(commit):
        raise SourceError(f"{where} gave the commit id {commit!r}, which is not 40 hex digits")
    return commit


def check_blob_id(etag: object, where: str) -> str:
    """``etag`` if it can name a blob (40 or 64 hex), else a ``SourceError``."""
    if not isinstance(etag, str) or not BLOB_ID.match(etag):
        raise SourceError(f"{where} gave the blob id {etag!r}, which is not 40 or 64 hex digits")
    return etag


def storage_folder(cache: Path, repo_id: str, repo_type: str = "model") -> Path:
    """``models--owner--name`` inside the cache."""
    return cache / "--".join([f"{repo_type}s", *repo_id.split("/")])


def blob_path(folder: Path, etag: str) -> Path:
    """Where the bytes of blob ``etag`` live."""
    return folder / "blobs" / check_blob_id(etag, "the Hugging Face Hub")


@dataclass(frozen=True)
class CachedFile:
    """A file of a cached snapshot: where its bytes are (a blob, or the snapshot's own copy
    where symlinks are impossible), the blob's name if it is one, and its size."""

    path: str  # in the repo
    bytes_at: Path
    etag: str | None
    size: int


def cached_commit(folder: Path, revision: str) -> str | None:
    """The commit ``revision`` names in the cache (``refs/<revision>``, or a commit id with
    a snapshot folder), None if the cache does not know it. Blocking."""
    if COMMIT.match(revision):
        return revision if (folder / "snapshots" / revision).is_dir() else None
    try:
        ref = safe_path(folder / "refs", revision, what="revision")
        commit = ref.read_text().strip()
    except (OSError, UnicodeDecodeError, UnsafePathError):
        return None
    if not COMMIT.match(commit) or not (folder / "snapshots" / commit).is_dir():
        return None
    return commit


def cached_files(folder: Path, commit: str) -> dict[str, CachedFile]:
    """Every file of a cached snapshot whose bytes are there (a link to a missing blob is
    not), by its path in the repo. Blocking."""
    snapshot = folder / "snapshots" / check_commit(commit, "the cache")
    blobs = (folder / "blobs").resolve()
    found: dict[str, CachedFile] = {}
    for path in sorted(snapshot.rglob("*")):
        if path.is_dir():
            continue
        real = path.resolve()
        try:
            size = real.stat().st_size
        except OSError:
            continue  # a link to a blob that is gone
        etag = real.name if real.parent == blobs and BLOB_ID.match(real.name) else None
        if path.is_symlink() and etag is None:
            continue  # a link out of the repo's blobs: not the cache's
        found[path.relative_to(snapshot).as_posix()] = CachedFile(
            path.relative_to(snapshot).as_posix(), real if etag else path, etag, size
        )
    return found


def repo_folders(folder: Path) -> tuple[Path, ...]:
    """The repo's ``blobs/`` and ``snapshots/``, made before anything is fetched into it."""
    return (folder / "blobs", folder / "snapshots")


def link_snapshot(folder: Path, commit: str, path: str, etag: str) -> Path:
    """Point ``snapshots/<commit>/<path>`` at the blob (a relative symlink, as
    huggingface_hub makes it; a copy where symlinks are impossible). Blocking."""
    check_commit(commit, "the Hugging Face Hub")
    snapshot = folder / "snapshots" / commit
    # The folders on the way must stay inside the snapshot; the pointer itself may already
    # be a link into blobs/ (an earlier download), which is replaced, never written through.
    *folders, name = check_relpath(path, what="repo file name")
    parent = safe_path(snapshot, "/".join(folders), what="repo file name") if folders else snapshot
    pointer = parent / name
    pointer.parent.mkdir(parents=True, exist_ok=True)
    blob = blob_path(folder, etag)
    target = os.path.relpath(blob, pointer.parent)
    if pointer.is_symlink() and os.readlink(pointer) == target:
        return pointer
    temporary = pointer.with_name(f".{pointer.name}.modelhaul-link")
    temporary.unlink(missing_ok=True)
    try:
        os.symlink(target, temporary)
    except OSError:  # no symlinks here (some Windows setups): a copy, as huggingface_hub does
        shutil.copyfile(blob, temporary)
    os.replace(temporary, pointer)
    return pointer


def write_ref(folder: Path, revision: str, commit: str) -> None:
    """``refs/<revision>`` = commit, written durably and atomically (nothing for a commit
    id). Blocking."""
    check_commit(commit, "the Hugging Face Hub")
    if revision == commit or COMMIT.match(revision):
        return
    ref = safe_path(folder / "refs", revision, what="revision")
    if ref.is_file() and ref.read_text() == commit:
        return
    write_atomically(ref, commit.encode())
