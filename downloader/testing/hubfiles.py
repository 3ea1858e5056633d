"""What the local hub serves: repos, their revisions and files, hashed the way git and
git-lfs name them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from downloader.durable import sha256_of

LFS_SUFFIXES = (".gguf", ".safetensors", ".bin", ".pt", ".pth", ".onnx", ".npz", ".h5", ".msgpack")
LFS_MIN_SIZE = 10 << 20


@dataclass(frozen=True)
class HubFile:
    """One file of one revision."""

    path: str
    source: Path
    size: int
    blob_id: str  # git object id: of the content, or of the LFS pointer
    lfs_sha256: str | None = None
    pointer_size: int | None = None


@dataclass
class HubRepo:
    """A model repo: its revisions (branch or tag name → commit) and commits' files."""

    repo_id: str
    gated: bool = False
    refs: dict[str, str] = field(default_factory=dict)
    commits: dict[str, dict[str, HubFile]] = field(default_factory=dict)


def lookup(repo: HubRepo, revision: str) -> str | None:
    """The commit a branch, tag or commit prefix (7+ characters) names, if one."""
    if revision in repo.refs:
        return repo.refs[revision]
    matches = [c for c in repo.commits if c.startswith(revision)] if len(revision) >= 7 else []
    return matches[0] if len(matches) == 1 else None


def describe(path: str, source: Path) -> HubFile:
    """Hash a file the way git and git-lfs do."""
    size = source.stat().st_size
    if size >= LFS_MIN_SIZE or path.endswith(LFS_SUFFIXES):
        sha256 = sha256_of(source)
        pointer = (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
        ).encode()
        return HubFile(path, source, size, git_blob_id(pointer), sha256, len(pointer))
    return HubFile(path, source, size, git_blob_id(source.read_bytes()))


def git_blob_id(content: bytes) -> str:
    """Git's object id of a blob with ``content``."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def repo_files(folder: Path) -> dict[str, Path]:
    """Every file under ``folder`` by its path relative to it (blocking)."""
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
