"""Find what is cached on disk: Hugging Face repos (the hub cache), Ollama models (its
store) and plain downloads (the download folder). Blocking: run it in a thread.

Sizes count each inode once: a Hugging Face snapshot's symlinks are not counted (their
blobs are), hard links are counted once, and Ollama layers shared by several models are
counted once in a total.

Who downloaded an entry is told by inodes: those of the files modelhaul's ledger recorded
(``owner``). Other tools' models are in the same stores, and stay theirs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from downloader.json_shapes import OLLAMA_MODEL, ollama_name

Inode = tuple[int, int]

# Who downloaded an entry's files: all of them modelhaul (its ledger recorded them), none of
# them (another tool: huggingface_hub, ollama, a browser), or some of each.
MODELHAUL, OTHER, MIXED = "modelhaul", "other", "mixed"


@dataclass(frozen=True)
class CacheEntry:
    """One cached model (or downloaded file or folder)."""

    key: str  # "hf:owner/name", "ollama:name:tag", "file:/abs/path"
    name: str
    provider: str  # huggingface, ollama, url
    format: str | None  # gguf, safetensors, or None
    path: Path  # what deleting it removes (an Ollama model: its manifest)
    files: dict[Inode, tuple[Path, int]]  # every real file (not symlink) and its size
    modified: float  # newest mtime of its files

    @property
    def size(self) -> int:
        return sum(size for _, size in self.files.values())

    @property
    def content(self) -> frozenset[Inode]:
        """The files that hold the model (a Hugging Face repo's ``refs/`` are bookkeeping)."""
        refs = self.path / "refs"
        return frozenset(
            inode
            for inode, (path, _) in self.files.items()
            if self.provider != "huggingface" or refs not in path.parents
        )

    def owner(self, downloaded: frozenset[Inode]) -> str:
        """``MODELHAUL``, ``OTHER`` or ``MIXED``: who downloaded the model's files, given the
        inodes of every file modelhaul did. An Ollama model is another tool's unless
        modelhaul wrote its manifest (its layers may be shared with anyone's models)."""
        content = self.content
        mine = content & downloaded
        if self.provider == "ollama" and _inode(self.path, self.files) not in downloaded:
            return OTHER
        if not mine:
            return OTHER
        return MODELHAUL if mine == content else MIXED

    def contains(self, path: Path) -> bool:
        """Whether ``path`` is this entry's or inside it."""
        return (
            path == self.path
            or self.path in path.parents
            or any(path == p for p, _ in self.files.values())
        )


@dataclass(frozen=True)
class CachedModel:
    """One cached model as ``ModelCache.cached_models()`` lists it."""

    key: str
    name: str
    provider: str
    format: str | None
    size: int
    path: Path
    last_used: float
    held_by: int | None  # the task writing to it, which protects it
    by: str = OTHER  # who downloaded it: MODELHAUL, OTHER or MIXED

    def to_dict(self) -> dict[str, object]:
        return {**vars(self), "path": str(self.path)}


def scan(hf_cache: Path, ollama_models: Path, downloads: Path) -> list[CacheEntry]:
    """Every entry of the three stores."""
    return [*_hf(hf_cache), *_ollama(ollama_models), *_downloads(downloads)]


def total_size(entries: list[CacheEntry]) -> int:
    """Bytes on disk, each inode once across entries."""
    seen: dict[Inode, int] = {}
    for e in entries:
        for inode, (_, size) in e.files.items():
            seen[inode] = size
    return sum(seen.values())


def _inode(path: Path, files: dict[Inode, tuple[Path, int]]) -> Inode | None:
    return next((inode for inode, (p, _) in files.items() if p == path), None)


def _walk(root: Path) -> tuple[dict[Inode, tuple[Path, int]], float, list[str]]:
    files: dict[Inode, tuple[Path, int]] = {}
    newest, names = 0.0, []
    for folder, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(folder) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            newest = max(newest, st.st_mtime)
            names.append(name)
            if path.is_symlink():
                continue
            files[(st.st_dev, st.st_ino)] = (path, st.st_size)
    return files, newest, names


def _format_of(names: list[str]) -> str | None:
    if any(n.endswith(".gguf") for n in names):
        return "gguf"
    if any(n.endswith(".safetensors") for n in names):
        return "safetensors"
    return None


def _hf(cache: Path) -> list[CacheEntry]:
    entries = []
    for folder in sorted(cache.glob("models--*")) if cache.is_dir() else []:
        repo_id = folder.name.removeprefix("models--").replace("--", "/", 1)
        files, newest, names = _walk(folder)
        entries.append(
            CacheEntry(
                f"hf:{repo_id}", repo_id, "huggingface", _format_of(names), folder, files, newest
            )
        )
    return entries


def _ollama(models: Path) -> list[CacheEntry]:
    root = models / "manifests"
    entries = []
    for manifest in sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []:
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            layers = [*data.get("layers", []), data.get("config") or {}]
        except (OSError, ValueError, AttributeError):
            continue
        st = manifest.stat()
        files = {(st.st_dev, st.st_ino): (manifest, st.st_size)}
        newest, fmt = st.st_mtime, None
        for layer in layers:
            digest = str(layer.get("digest", ""))
            blob = models / "blobs" / digest.replace(":", "-")
            if not digest or not blob.is_file():
                continue
            b = blob.stat()
            files[(b.st_dev, b.st_ino)] = (blob, b.st_size)
            newest = max(newest, b.st_mtime)
            if layer.get("mediaType") == OLLAMA_MODEL:
                fmt = "gguf"
        name = ollama_name(manifest.relative_to(root))
        entries.append(CacheEntry(f"ollama:{name}", name, "ollama", fmt, manifest, files, newest))
    return entries


def _downloads(folder: Path) -> list[CacheEntry]:
    entries = []
    for item in sorted(folder.iterdir()) if folder.is_dir() else []:
        if item.is_dir() and not item.is_symlink():
            files, newest, names = _walk(item)
        else:
            st = item.lstat()
            files = {(st.st_dev, st.st_ino): (item, st.st_size)}
            newest, names = st.st_mtime, [item.name]
        entries.append(
            CacheEntry(f"file:{item}", item.name, "url", _format_of(names), item, files, newest)
        )
    return entries
