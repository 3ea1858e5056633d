"""The Hugging Face cache layout, as ``huggingface_hub`` reads it::

    <cache>/models--<owner>--<name>/
        blobs/<etag>                         the bytes (etag: LFS sha256, else git blob id)
        snapshots/<commit>/<path>   ->  ../../blobs/<etag>   (relative symlinks)
        refs/<revision>                      the commit a branch or tag points to

Files we write here are found by ``hf_hub_download(..., local_files_only=True)`` and
``snapshot_download(..., local_files_only=True)``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

COMMIT = re.compile(r"^[0-9a-f]{40}$")


def storage_folder(cache: Path, repo_id: str, repo_type: str = "model") -> Path:
    """``models--owner--name`` inside the cache."""
    return cache / "--".join([f"{repo_type}s", *repo_id.split("/")])


def blob_path(folder: Path, etag: str) -> Path:
    """Where the bytes of blob ``etag`` live."""
    return folder / "blobs" / etag


def link_snapshot(folder: Path, commit: str, path: str, etag: str) -> Path:
    """Point ``snapshots/<commit>/<path>`` at the blob (a relative symlink, as
    huggingface_hub makes it; a copy where symlinks are impossible). Blocking."""
    pointer = folder / "snapshots" / commit / Path(*path.split("/"))
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
    """``refs/<revision>`` = commit, written atomically (nothing for a commit id). Blocking."""
    if revision == commit or COMMIT.match(revision):
        return
    ref = folder / "refs" / Path(*revision.split("/"))
    ref.parent.mkdir(parents=True, exist_ok=True)
    if ref.is_file() and ref.read_text() == commit:
        return
    fd, temporary = tempfile.mkstemp(dir=ref.parent, prefix=f".{ref.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(commit)
    os.replace(temporary, ref)
