"""Cache management, as model managers offer it: what is cached, where, how big; evict least
recently used to fit; delete; clear. Over the Hugging Face cache, the Ollama store and the
download folder, with last use kept in the ledger. Nothing a pending, running or paused task
writes to is ever evicted or deleted (a paused task's partial files are work we keep)."""

from __future__ import annotations

import asyncio
import fnmatch
import shutil
from dataclasses import dataclass
from pathlib import Path

from downloader.cache.scan import CacheEntry, scan, total_size
from downloader.engine.partfile import partial_path
from downloader.errors import ModelhaulError
from downloader.settings import Settings
from downloader.sources import source_for
from downloader.specs import Spec, parse_spec
from storage import UNDERWAY, Ledger, open_ledger


class CacheError(ModelhaulError):
    """A cache operation that cannot be done (not cached, or a task still holds it)."""


@dataclass(frozen=True)
class CachedModel:
    """One cached model as ``cached_models()`` lists it."""

    key: str
    name: str
    provider: str
    format: str | None
    size: int
    path: Path
    last_used: float
    held_by: int | None  # the task writing to it, which protects it

    def to_dict(self) -> dict[str, object]:
        return {**vars(self), "path": str(self.path)}


@dataclass(frozen=True)
class Eviction:
    """What ``evict_to_fit`` did."""

    evicted: list[CachedModel]
    freed: int
    size_before: int
    size_after: int
    fits: bool  # False: what is left is held by tasks and still too big


class ModelCache:
    """The caches, over one ledger. ``async with ModelCache(settings) as cache: …``"""

    def __init__(self, settings: Settings | None = None, ledger: Ledger | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self._ledger = ledger
        self._own_ledger = ledger is None

    async def __aenter__(self) -> ModelCache:
        if self._ledger is None:
            self._ledger = await open_ledger(self.settings.ledger_target)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._own_ledger and self._ledger is not None:
            await self._ledger.close()
            self._ledger = None

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            raise RuntimeError("use 'async with ModelCache(...)' first")
        return self._ledger

    # --- looking ----------------------------------------------------------------------------

    async def _entries(self) -> list[CacheEntry]:
        s = self.settings
        return await asyncio.to_thread(scan, s.hf_cache_dir, s.ollama_models_dir, s.download_dir)

    async def _holders(self) -> list[tuple[int, Path]]:
        """(task id, path) of everything a pending, running or paused task writes to."""
        held = []
        for task in await self.ledger.tasks.list(UNDERWAY):
            held.append((task.id, Path(task.destination)))
            for f in await self.ledger.files.of_task(task.id):
                held += [(task.id, Path(f.local_path)), (task.id, partial_path(f))]
        return held

    async def cached_models(self) -> list[CachedModel]:
        """Every cached model, least recently used first."""
        entries, uses, holders = (
            await self._entries(),
            await self.ledger.uses.all(),
            await self._holders(),
        )
        models = [self._model(e, uses, holders) for e in entries]
        return sorted(models, key=lambda m: m.last_used)

    def _model(
        self, e: CacheEntry, uses: dict[str, float], holders: list[tuple[int, Path]]
    ) -> CachedModel:
        held = next((task for task, path in holders if e.contains(path)), None)
        last = max(uses.get(e.key, 0.0), e.modified)
        return CachedModel(e.key, e.name, e.provider, e.format, e.size, e.path, last, held)

    async def cache_size(self) -> int:
        """Bytes on disk, every blob once."""
        return total_size(await self._entries())

    def key_of(self, spec: str | Spec) -> tuple[str, Spec]:
        """The cache key a spec downloads to."""
        spec = spec if isinstance(spec, Spec) else parse_spec(spec)
        if spec.provider in ("huggingface", "mlx"):
            return f"hf:{spec.source}", spec
        if spec.provider == "ollama":
            name = spec.source if ":" in spec.source.rsplit("/", 1)[-1] else f"{spec.source}:latest"
            return f"ollama:{name}", spec
        path = source_for(spec.provider).destination(spec, None, self.settings)
        top = path
        while top.parent != self.settings.download_dir and top.parent != top:
            top = top.parent
        return f"file:{top}", spec

    async def _entry(self, spec: str | Spec) -> tuple[CacheEntry | None, Spec]:
        key, parsed = self.key_of(spec)
        return next((e for e in await self._entries() if e.key == key), None), parsed

    async def local_path(self, spec: str | Spec) -> Path | None:
        """Where a cached model is (a file for a single-file spec, else its folder), or None;
        records the use."""
        entry, parsed = await self._entry(spec)
        if entry is None:
            return None
        found = await asyncio.to_thread(_located, entry, parsed)
        if found is not None:
            await self.ledger.uses.touch(entry.key)
        return found

    async def is_cached(self, spec: str | Spec) -> bool:
        """Whether the model is on disk, complete (not only a partial download)."""
        entry, parsed = await self._entry(spec)
        if entry is None:
            return False
        if await asyncio.to_thread(_located, entry, parsed) is None:
            return False
        holders = await self._holders()
        return not any(entry.contains(path) for _, path in holders)

    # --- removing ---------------------------------------------------------------------------

    async def delete(self, spec: str | Spec) -> CachedModel:
        """Remove one model from disk; ``CacheError`` if it is not cached or a task holds it."""
        entry, _ = await self._entry(spec)
        if entry is None:
            raise CacheError(f"{spec} is not in the cache")
        model = self._model(entry, await self.ledger.uses.all(), await self._holders())
        return await self._remove(model, entry)

    async def _remove(self, model: CachedModel, entry: CacheEntry) -> CachedModel:
        if model.held_by is not None:
            raise CacheError(
                f"{model.name} is being written by task {model.held_by}: cancel it first "
                f"('modelhaul cancel {model.held_by}')"
            )
        others = [e for e in await self._entries() if e.key != entry.key]
        await asyncio.to_thread(_delete, entry, others)
        await self.ledger.uses.forget(entry.key)
        return model

    async def evict_to_fit(self, max_bytes: int) -> Eviction:
        """Delete least recently used models until the caches hold at most ``max_bytes``;
        models held by tasks are skipped."""
        before = size = await self.cache_size()
        evicted: list[CachedModel] = []
        for model in await self.cached_models():
            if size <= max_bytes:
                break
            if model.held_by is not None:
                continue
            entry = next((e for e in await self._entries() if e.key == model.key), None)
            if entry is None:
                continue
            evicted.append(await self._remove(model, entry))
            size = await self.cache_size()
        return Eviction(evicted, before - size, before, size, size <= max_bytes)

    async def clear_cache(self) -> list[CachedModel]:
        """Delete every model no task holds; returns them."""
        removed = []
        for model in await self.cached_models():
            if model.held_by is None:
                entry = next((e for e in await self._entries() if e.key == model.key), None)
                if entry is not None:
                    removed.append(await self._remove(model, entry))
        return removed


def _located(entry: CacheEntry, spec: Spec) -> Path | None:
    if entry.provider != "huggingface":
        return entry.path if entry.path.exists() else None
    ref = entry.path / "refs" / (spec.revision or "main")
    commit = ref.read_text().strip() if ref.is_file() else spec.revision
    snapshot = entry.path / "snapshots" / (commit or "")
    if not commit or not snapshot.is_dir():
        return None
    if spec.patterns:
        matches = [
            p
            for p in snapshot.rglob("*")
            if p.is_file()
            and any(
                fnmatch.fnmatch(p.relative_to(snapshot).as_posix(), pat) for pat in spec.patterns
            )
        ]
        if not matches:
            return None
        return matches[0] if len(matches) == 1 else snapshot
    return snapshot if any(snapshot.iterdir()) else None


def _delete(entry: CacheEntry, others: list[CacheEntry]) -> None:
    if entry.provider == "ollama":
        shared = {inode for e in others for inode in e.files}
        for inode, (path, _) in entry.files.items():
            if inode not in shared:
                path.unlink(missing_ok=True)
        return
    if entry.path.is_dir() and not entry.path.is_symlink():
        shutil.rmtree(entry.path)
    else:
        entry.path.unlink(missing_ok=True)


__all__ = ["CacheError", "CachedModel", "Eviction", "ModelCache"]
