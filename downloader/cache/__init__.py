"""Cache management, as model managers offer it: what is cached, where, how big, and who
downloaded it; evict least recently used to fit; delete; clear. Over the Hugging Face cache,
the Ollama store and the download folder, with last use kept in the ledger.

What may be removed, by every method alike (the API's defaults are the CLI's):

- Nothing a pending, running or paused task writes to (a paused task's partial files are
  work we keep).
- By default only what modelhaul downloaded: the files its ledger recorded as its tasks'.
  Other tools' models (``hf download``, ``ollama pull``) share these stores and are theirs;
  ``others=True`` (the CLI's ``--all``) includes them.
- A removal is planned first (``plan_delete``, ``plan_eviction``, ``plan_clear``) and the
  plan is what ``carry_out`` removes, so what a user is shown is exactly what goes.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from downloader.cache import removal
from downloader.cache.indexing import IndexScan, index_stores
from downloader.cache.removal import Removal
from downloader.cache.scan import OTHER, CachedModel, CacheEntry, Inode, scan, total_size
from downloader.engine.partfile import partial_path
from downloader.errors import ModelhaulError, SpecError
from downloader.settings import Settings
from downloader.sources import source_for
from downloader.specs import Spec, parse_spec
from storage import UNDERWAY, Ledger, open_ledger


class CacheError(ModelhaulError):
    """A cache operation that cannot be done (not cached, a task still holds it, another
    tool's model without ``others``)."""


@dataclass(frozen=True)
class Eviction:
    """What ``evict_to_fit`` did."""

    evicted: list[CachedModel]
    freed: int
    size_before: int
    size_after: int
    fits: bool  # False: what is left is held by tasks, or other tools', and still too big


@dataclass(frozen=True)
class RemovalPlan:
    """What a removal would do: each model's ``Removal`` (files and links, bytes freed), in
    order; why some asked-for models stay (``refused``: not cached, held by a task, another
    tool's); the caches' size before and after."""

    removals: list[Removal]
    refused: list[str]
    size_before: int
    size_after: int

    @property
    def freed(self) -> int:
        return self.size_before - self.size_after

    def to_dict(self) -> dict[str, object]:
        """As ``--dry-run --json`` shows it."""
        return {
            "remove": [r.to_dict() for r in self.removals],
            "refused": self.refused,
            "freed": self.freed,
            "size_before": self.size_before,
            "size_after": self.size_after,
        }


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

    async def _downloaded(self) -> frozenset[Inode]:
        """The inodes of every file modelhaul's ledger records as downloaded by one of its
        tasks (and their partial files), and of the Ollama manifests it wrote. A file that
        was already in place when a task ran (``present``) is not one it downloaded."""
        paths = []
        for task in await self.ledger.tasks.list():
            for f in await self.ledger.files.of_task(task.id):
                if not f.meta.get("present"):
                    paths += [Path(f.local_path), partial_path(f)]
            manifest = task.options.get("manifest_path")
            if task.provider == "ollama" and isinstance(manifest, str):
                paths.append(Path(task.destination) / manifest)
        return await asyncio.to_thread(_inodes, paths)

    async def index(self) -> IndexScan:
        """Put the Hugging Face cache's and the Ollama store's blobs in the content index,
        so that downloads reuse them (``downloader.cache.indexing``)."""
        s = self.settings
        return await index_stores(self.ledger, s.hf_cache_dir, s.ollama_models_dir)

    async def cached_models(self) -> list[CachedModel]:
        """Every cached model, least recently used first."""
        return [m for m, _ in (await self._models())[0]]

    async def _models(
        self,
    ) -> tuple[list[tuple[CachedModel, CacheEntry]], frozenset[Inode]]:
        """Every model with its entry, least recently used first; and the inodes of the
        files modelhaul downloaded."""
        entries, uses, holders, downloaded = (
            await self._entries(),
            await self.ledger.uses.all(),
            await self._holders(),
            await self._downloaded(),
        )
        models = [(self._model(e, uses, holders, downloaded), e) for e in entries]
        return sorted(models, key=lambda pair: pair[0].last_used), downloaded

    def _model(
        self,
        e: CacheEntry,
        uses: dict[str, float],
        holders: list[tuple[int, Path]],
        downloaded: frozenset[Inode],
    ) -> CachedModel:
        held = next((task for task, path in holders if e.contains(path)), None)
        last = max(uses.get(e.key, 0.0), e.modified)
        return CachedModel(
            e.key, e.name, e.provider, e.format, e.size, e.path, last, held, e.owner(downloaded)
        )

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

    async def find(self, name: str | Spec) -> CachedModel | None:
        """The cached model ``name`` stands for: its key or its name as ``cached_models``
        gives them (``org/repo``, ``gemma3:1b``, ``model.gguf``), or a spec; None if it is
        not cached. ``CacheError`` if it is none of these, or names several models."""
        return next((m for m, _ in await self._find(name, (await self._models())[0])), None)

    async def _find(
        self, name: str | Spec, models: list[tuple[CachedModel, CacheEntry]]
    ) -> list[tuple[CachedModel, CacheEntry]]:
        if isinstance(name, str):
            by_key = [pair for pair in models if pair[0].key == name]
            by_name = by_key or [pair for pair in models if pair[0].name == name]
            if len(by_name) > 1:
                keys = ", ".join(m.key for m, _ in by_name)
                raise CacheError(f"'{name}' names {len(by_name)} cached models: give one of {keys}")
            if by_name:
                return by_name
        try:
            key, _ = self.key_of(name)
        except SpecError as e:
            raise CacheError(
                f"'{name}' is neither a name 'modelhaul cache ls' shows nor a download spec ({e})"
            ) from None
        return [pair for pair in models if pair[0].key == key]

    async def plan_delete(
        self, names: Sequence[str | Spec], *, others: bool = False
    ) -> RemovalPlan:
        """What deleting the models ``names`` stand for (see ``find``) would remove; the
        names that cannot be deleted are in ``refused``, saying why."""
        (models, downloaded), refused, chosen = await self._models(), [], []
        for name in names:
            try:
                found = await self._find(name, models)
            except CacheError as e:
                refused.append(str(e))
                continue
            if not found:
                refused.append(f"{name} is not in the cache")
            for model, entry in found:
                if model.held_by is not None:
                    refused.append(_held(model))
                elif model.by == OTHER and not others:
                    refused.append(
                        f"{model.name} was downloaded by another tool, not modelhaul: pass "
                        "--all (others=True) to delete it too"
                    )
                elif (model, entry) not in chosen:
                    chosen.append((model, entry))
        return await self._plan(chosen, models, downloaded, refused, others)

    async def plan_eviction(self, max_bytes: int, *, others: bool = False) -> RemovalPlan:
        """What evicting least recently used models until the caches hold at most
        ``max_bytes`` would remove (models held by tasks, and other tools' unless
        ``others``, are skipped)."""
        models, downloaded = await self._models()
        entries = [e for _, e in models]
        planner = removal.Planner(entries, downloaded, others=others)
        for model, entry in models:
            if planner.size <= max_bytes:
                break
            if model.held_by is None:
                await asyncio.to_thread(planner.add, model, entry)
        return RemovalPlan(planner.removals, [], total_size(entries), planner.size)

    async def plan_clear(self, *, others: bool = False) -> RemovalPlan:
        """What deleting every model no task holds (modelhaul's, and with ``others`` every
        other tool's too) would remove."""
        models, downloaded = await self._models()
        chosen = [(m, e) for m, e in models if m.held_by is None]
        return await self._plan(chosen, models, downloaded, [], others)

    async def _plan(
        self,
        chosen: list[tuple[CachedModel, CacheEntry]],
        models: list[tuple[CachedModel, CacheEntry]],
        downloaded: frozenset[Inode],
        refused: list[str],
        others: bool,
    ) -> RemovalPlan:
        entries = [e for _, e in models]
        planner = await asyncio.to_thread(removal.plan, chosen, entries, downloaded, others=others)
        return RemovalPlan(planner.removals, refused, total_size(entries), planner.size)

    async def carry_out(self, plan: RemovalPlan) -> list[CachedModel]:
        """Remove what ``plan`` says, model by model; returns the models removed. A model a
        task has started to write to since the plan was made is kept (it is not among
        those returned)."""
        holders, entries = await self._holders(), await self._entries()
        done = []
        for r in plan.removals:
            entry = next((e for e in entries if e.key == r.model.key), None)
            if entry is not None and any(entry.contains(path) for _, path in holders):
                continue
            await asyncio.to_thread(removal.carry_out, r)
            if not await asyncio.to_thread(r.model.path.exists):
                await self.ledger.uses.forget(r.model.key)
            done.append(r.model)
        return done

    async def delete(self, spec: str | Spec, *, others: bool = False) -> CachedModel:
        """Remove one model from disk (only modelhaul's files of it unless ``others``);
        ``CacheError`` if it is not cached, a task holds it, or it is another tool's."""
        plan = await self.plan_delete([spec], others=others)
        if plan.refused:
            raise CacheError(plan.refused[0])
        if not plan.removals:
            raise CacheError(f"{spec}: nothing of it can go without removing another model's")
        done = await self.carry_out(plan)
        if not done:
            raise CacheError(f"kept {spec}: a task started writing to it meanwhile")
        return done[0]

    async def evict_to_fit(self, max_bytes: int, *, others: bool = False) -> Eviction:
        """Delete least recently used models until the caches hold at most ``max_bytes``;
        models held by tasks, and other tools' unless ``others``, are skipped."""
        plan = await self.plan_eviction(max_bytes, others=others)
        evicted = await self.carry_out(plan)
        size = await self.cache_size()
        return Eviction(evicted, plan.size_before - size, plan.size_before, size, size <= max_bytes)

    async def clear_cache(self, *, others: bool = False) -> list[CachedModel]:
        """Delete every model no task holds: modelhaul's, and with ``others`` every other
        tool's too; returns them."""
        return await self.carry_out(await self.plan_clear(others=others))


def _held(model: CachedModel) -> str:
    """Why a model a task writes to stays."""
    return (
        f"{model.name} is being written by task {model.held_by}: cancel it first "
        f"('modelhaul cancel {model.held_by}')"
    )


def _inodes(paths: list[Path]) -> frozenset[Inode]:
    found = set()
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        found.add((st.st_dev, st.st_ino))
    return frozenset(found)


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


__all__ = [
    "CacheError",
    "CachedModel",
    "Eviction",
    "IndexScan",
    "ModelCache",
    "Removal",
    "RemovalPlan",
]
