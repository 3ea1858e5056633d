"""Removing cached models, planned before anything is touched: a plan names every file and
link that will go, so what a user is shown (and agrees to) is exactly what is removed.
Blocking: run it in a thread.

A model is removed whole (every file under its folder; an Ollama model's manifest and the
layers no other model uses) when modelhaul downloaded all of it, or when the caller asks for
other tools' models too. Where only some of its files are modelhaul's (a Hugging Face repo
that huggingface_hub also downloaded into), only those go, with the snapshot links that
point at them and the refs of snapshots left empty; the rest stays as the other tool left
it. A model modelhaul downloaded none of is not touched unless asked.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from downloader.cache.scan import MODELHAUL, OTHER, CachedModel, CacheEntry, Inode


@dataclass(frozen=True)
class Removal:
    """One model's removal: which files and links go, and the bytes that frees (files also
    linked from a model that stays keep their bytes)."""

    model: CachedModel
    whole: bool  # the whole model, not only modelhaul's part of it
    paths: tuple[Path, ...]  # every file and link removed (folders left empty go too)
    freed: int

    def to_dict(self) -> dict[str, object]:
        """As ``--json`` shows it: the model, and what of it goes."""
        return {
            **self.model.to_dict(),
            "whole": self.whole,
            "freed": self.freed,
            "paths": [str(p) for p in self.paths],
        }


class Planner:
    """Removals planned one after another, each as it would find the caches after those
    before it: a layer two removed Ollama models share goes with the second."""

    def __init__(
        self, entries: Sequence[CacheEntry], downloaded: frozenset[Inode], *, others: bool
    ) -> None:
        self._downloaded = downloaded
        self._others = others
        self._sizes = {i: size for e in entries for i, (_, size) in e.files.items()}
        self._on_disk = {e.key: frozenset(e.files) for e in entries}  # per entry, what stays
        self._models = {e.key for e in entries}  # entries still there as models
        self.removals: list[Removal] = []

    @property
    def size(self) -> int:
        """The caches' size once the planned removals are done, each inode counted once."""
        return sum(self._sizes[i] for i in frozenset().union(*self._on_disk.values()))

    def add(self, model: CachedModel, entry: CacheEntry) -> Removal | None:
        """Plan removing ``model`` next; None when nothing of it would go (another tool's
        model, unless ``others``; or nothing of it that is not shared)."""
        if model.by == OTHER and not self._others:
            return None
        elsewhere = frozenset().union(
            *(v for k, v in self._on_disk.items() if k != entry.key and k in self._models)
        )
        whole = self._others or model.by == MODELHAUL
        gone = entry.content if whole else entry.content & self._downloaded
        planned = _plan_one(model, entry, gone - elsewhere, whole)
        if not planned.paths:
            return None
        self._on_disk[entry.key] -= _held_by(entry, planned.paths)
        if whole or entry.provider == "ollama":  # (without its manifest it is no model)
            self._models.discard(entry.key)
        self.removals.append(planned)
        return planned


def plan(
    chosen: Sequence[tuple[CachedModel, CacheEntry]],
    entries: Sequence[CacheEntry],
    downloaded: frozenset[Inode],
    *,
    others: bool,
) -> Planner:
    """The removals of ``chosen``, in order (see ``Planner``)."""
    planner = Planner(entries, downloaded, others=others)
    for model, entry in chosen:
        planner.add(model, entry)
    return planner


def carry_out(removal: Removal) -> None:
    """Remove exactly the planned paths, then the folders they leave empty (up to the
    model's own folder). A file that came to be there since the plan stays."""
    folders = set()
    for path in removal.paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        folders.update(_folders_between(path, removal.model.path))
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty: something stays in it
            folder.rmdir()


def _plan_one(
    model: CachedModel, entry: CacheEntry, gone: frozenset[Inode], whole: bool
) -> Removal:
    if entry.provider == "ollama":
        # Its manifest, and the layers no other model uses.
        paths = sorted(p for i, (p, _) in entry.files.items() if i in gone)
    else:
        paths = _everything(entry.path) if whole else _linked(entry, gone)
    freed = sum(entry.files[i][1] for i in _held_by(entry, paths))
    return Removal(model, whole, tuple(paths), freed)


def _held_by(entry: CacheEntry, paths: Sequence[Path]) -> frozenset[Inode]:
    """The entry's inodes whose every name under it is among ``paths`` (their bytes go)."""
    going = set(paths)
    return frozenset(i for i, (p, _) in entry.files.items() if p in going)


def _everything(root: Path) -> list[Path]:
    """Every file and link under ``root`` (or ``root`` itself, a file)."""
    if not root.is_dir() or root.is_symlink():
        return [root]
    return sorted(Path(folder) / name for folder, _, names in os.walk(root) for name in names)


def _linked(entry: CacheEntry, gone: frozenset[Inode]) -> list[Path]:
    """Every file under the entry holding one of the ``gone`` inodes, every link to one
    (a Hugging Face snapshot's), and the refs of snapshots that would be left empty."""
    root = entry.path
    if not root.is_dir() or root.is_symlink():
        return [root] if _inode_of(root) in gone else []
    paths, kept_snapshots = [], set()
    for path in _everything(root):
        if _inode_of(path.resolve() if path.is_symlink() else path) in gone:
            paths.append(path)
        elif (commit := _snapshot_of(path, root)) is not None:
            kept_snapshots.add(commit)
    refs = root / "refs"
    if entry.provider == "huggingface" and refs.is_dir():
        for ref in (p for p in refs.rglob("*") if p.is_file() and p not in paths):
            commit = ref.read_text(errors="replace").strip()
            if commit not in kept_snapshots:
                paths.append(ref)  # its snapshot is going: a ref to nothing is "corrupted"
    return sorted(paths)


def _snapshot_of(path: Path, root: Path) -> str | None:
    """The commit of the snapshot ``path`` lies in, if it does."""
    parts = path.relative_to(root).parts
    return parts[1] if len(parts) > 2 and parts[0] == "snapshots" else None


def _folders_between(path: Path, root: Path) -> list[Path]:
    """The folders from ``path``'s up to ``root`` (included), if ``path`` is under it."""
    if path == root or root not in path.parents:
        return []
    folders, folder = [], path.parent
    while folder != root:
        folders.append(folder)
        folder = folder.parent
    return [*folders, root]


def _inode_of(path: Path) -> Inode | None:
    try:
        st = path.lstat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)
