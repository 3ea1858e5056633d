"""The Hugging Face Hub (and MLX repos, which live there too).

Metadata comes from ``huggingface_hub.HfApi`` (honouring ``HF_ENDPOINT``): the commit, every
file's size, and the LFS sha256 that each large file is verified against. The bytes come
through our engine from each file's ``resolve`` URL, pinned to the commit, with the token
sent to the hub only: the engine never forwards it to the CDN a large file redirects to.

Files land in the Hugging Face cache (``HF_HUB_CACHE``/``HF_HOME``) as ``huggingface_hub``
lays it out, or flat in a folder given as the destination (``local_dir``).
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from downloader.errors import AuthRequiredError, NotFoundError, SourceError, UnsafePathError
from downloader.paths import check_relpath, safe_path
from downloader.settings import Settings
from downloader.sources import hfcache, hubapi
from downloader.sources.base import RemoteFile, Resolution, SourceContext, Update
from downloader.sources.bodies import INDEX_LIMIT, parse_json, read_limited
from downloader.specs import Spec

SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.(?P<ext>gguf|safetensors)$")


class HuggingFaceSource:
    """A repo on the Hub: one file, a glob, or the whole snapshot."""

    folder_destination = True  # the repo's storage folder in the cache, or a local_dir

    def __init__(self, provider: str = "huggingface") -> None:
        self.provider = provider

    def destination(self, spec: Spec, dest: str | None, settings: Settings) -> Path:
        if dest is not None:  # a local_dir: the files themselves, no blobs or links
            return Path(dest).expanduser().absolute()
        return hfcache.storage_folder(settings.hf_cache_dir, spec.source)

    def cache_layout(self, spec: Spec, destination: Path, settings: Settings) -> bool:
        """Whether the files go into the Hugging Face cache (else into a plain folder)."""
        return destination == hfcache.storage_folder(settings.hf_cache_dir, spec.source)

    async def delegate(self, spec: Spec, ctx: SourceContext) -> AsyncIterator[Update] | None:
        return None

    async def resolve(self, spec: Spec, destination: Path, ctx: SourceContext) -> Resolution:
        settings = ctx.settings
        if await asyncio.to_thread(_offline):
            return await self._resolve_cached(spec, destination, settings)
        token = ctx.token or await asyncio.to_thread(_stored_token)
        repo_id = spec.source
        revision = spec.options.get("commit") or spec.revision or "main"
        info = await hubapi.model_info(ctx.session, settings.hf_endpoint, token, repo_id, revision)
        where = f"the Hugging Face Hub at {settings.hf_endpoint} (model '{repo_id}')"
        commit = hfcache.check_commit(info.sha, where)
        siblings = checked_siblings(info.siblings, where, settings.max_file_size)
        wanted = select(siblings, spec.patterns, repo_id, spec.revision or "main", _excluded(spec))
        auth = {"Authorization": f"Bearer {token}"} if token else {}

        def url(path: str, endpoint: str = settings.hf_endpoint) -> str:
            return f"{endpoint}/{repo_id}/resolve/{commit}/{quote(path)}"

        def near(path: str) -> tuple[str, ...]:
            # MODELHAUL_HF_MIRRORS: asked before the Hub for the bytes (never given the
            # token, which is the Hub's); the Hub stays as a mirror behind them.
            return tuple(url(path, m) for m in settings.hf_mirrors)

        async def shards_of(index: str) -> list[str]:
            return await _index_shards(url(index), auth, ctx.session)

        wanted = await _with_companions(wanted, spec.patterns, siblings, shards_of, repo_id)
        if info.gated and not token:
            raise AuthRequiredError(
                f"Model '{repo_id}' requires authentication. Provide token parameter "
                "(or log in with 'hf auth login' / set HF_TOKEN)."
            )
        cache = self.cache_layout(spec, destination, settings)
        targets = await asyncio.to_thread(
            _targets, destination, [siblings[p] for p in wanted], cache
        )
        # The same bytes under two names are fetched once: one file, every name it has.
        names: dict[Path, list[str]] = {}
        for path in wanted:
            names.setdefault(targets[path], []).append(path)
        files = tuple(
            RemoteFile(
                urls=(url(paths[0]), *near(paths[0])),
                name=paths[0],
                target=target,
                size=siblings[paths[0]].size,
                sha256=siblings[paths[0]].sha256,
                # In the cache a blob is named by its digest (sha256, or git's id): one of
                # the right size there is that blob.
                content_addressed=cache,
                # Named as huggingface_hub names a blob it is fetching, so that its cache
                # scanner (and 'hf cache ls') reads a paused download as one.
                partial_suffix=hfcache.PARTIAL_SUFFIX if cache else None,
                meta={
                    "commit": commit,
                    "etag": siblings[paths[0]].etag,
                    "paths": paths,
                    **({"preferred": list(near(paths[0]))} if settings.hf_mirrors else {}),
                },
            )
            for target, paths in names.items()
        )
        # huggingface_hub makes a repo's folders before its first byte arrives; a repo
        # folder with blobs but no snapshots/ is "corrupted" to its cache scanner.
        folders = hfcache.repo_folders(destination) if cache else ()
        return Resolution(files, auth, {"commit": commit}, folders)

    async def finish(
        self, spec: Spec, destination: Path, resolution: Resolution, ctx: SourceContext
    ) -> None:
        if self.cache_layout(spec, destination, ctx.settings):
            await asyncio.to_thread(_link_all, spec, destination, resolution.files)

    async def _resolve_cached(self, spec: Spec, folder: Path, settings: Settings) -> Resolution:
        """``HF_HUB_OFFLINE``: the spec as the cache answers it, without the network (as
        huggingface_hub serves ``local_files_only``): the revision from ``refs/``, the files
        from its snapshot; what the cache does not hold is a ``NotFoundError`` saying so. A
        glob matches the snapshot's files, all the cache can know of."""
        repo_id = spec.source
        revision = spec.options.get("commit") or spec.revision or "main"
        offline = "is not in the cache and HF_HUB_OFFLINE is set"
        if not self.cache_layout(spec, folder, settings):
            raise NotFoundError(
                f"Model '{repo_id}' in {folder} cannot be fetched: HF_HUB_OFFLINE is set, and "
                "only the Hugging Face cache is served offline (no --dest)"
            )
        at = "" if revision == "main" else f" at revision '{revision}'"
        commit = await asyncio.to_thread(hfcache.cached_commit, folder, revision)
        cached = await asyncio.to_thread(hfcache.cached_files, folder, commit) if commit else {}
        if not cached:
            raise NotFoundError(f"Model '{repo_id}'{at} {offline}")
        assert commit is not None
        try:
            wanted = select(cached, spec.patterns, repo_id, revision, _excluded(spec))
        except NotFoundError:
            missing = [p for p in spec.patterns or () if not select_one(cached, p)]
            raise NotFoundError(f"File '{missing[0]}' of model '{repo_id}'{at} {offline}") from None

        async def shards_of(index: str) -> list[str]:
            return await asyncio.to_thread(_cached_index_shards, cached[index].bytes_at)

        try:
            wanted = await _with_companions(wanted, spec.patterns, cached, shards_of, repo_id)
        except NotFoundError as e:
            raise NotFoundError(f"{e}: {offline.removeprefix('is ')}") from None
        url = f"{settings.hf_endpoint}/{repo_id}/resolve/{commit}/"
        names: dict[Path, list[str]] = {}
        for path in wanted:
            names.setdefault(cached[path].bytes_at, []).append(path)
        files = tuple(
            RemoteFile(
                urls=(url + quote(paths[0]),),  # never asked: the bytes are here
                name=paths[0],
                target=where,
                size=cached[paths[0]].size,
                # A blob named by its LFS sha256 is that digest's bytes.
                sha256=etag if (etag := cached[paths[0]].etag) and SHA256.match(etag) else None,
                content_addressed=etag is not None,
                partial_suffix=hfcache.PARTIAL_SUFFIX,
                meta={"commit": commit, "etag": etag, "paths": paths},
            )
            for where, paths in names.items()
        )
        return Resolution(files, {}, {"commit": commit})


@dataclass(frozen=True)
class Sibling:
    """One file of a repo revision, as the Hub describes it, checked: a safe relative path,
    a size within bounds (or unknown), and the digests that name and verify its blob."""

    path: str
    size: int | None
    sha256: str | None  # the LFS digest the bytes are verified against
    etag: str  # the blob's name in the cache: the LFS sha256, else git's blob id


def checked_siblings(raw: Any, where: str, max_size: int) -> dict[str, Sibling]:
    """The Hub's file list with every field checked (``SourceError`` naming the file and
    what is wrong): huggingface_hub takes whatever JSON it is sent."""
    if not isinstance(raw, list):
        raise SourceError(f"{where} sent no list of files")
    out: dict[str, Sibling] = {}
    for s in raw:
        path = s.rfilename
        try:
            check_relpath(path, what="repo file name")
        except UnsafePathError as e:
            raise SourceError(f"{where}: {e}") from None
        size = s.size
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= max_size
        ):
            raise SourceError(
                f"{where} gives '{path}' the size {size!r:.40}: not a whole number from 0 to "
                f"{max_size}"
            )
        sha256 = None
        if s.lfs:
            sha256 = s.lfs.sha256 if isinstance(s.lfs.sha256, str) else None
            if sha256 is None or not SHA256.match(sha256):
                raise SourceError(f"{where} gives '{path}' the LFS sha256 {s.lfs.sha256!r:.80}")
        etag = hfcache.check_blob_id(sha256 or s.blob_id, f"{where} for '{path}'")
        out[path] = Sibling(path, size, sha256, etag)
    return out


def _targets(folder: Path, files: list[Sibling], cache: bool) -> dict[str, Path]:
    """Where each file's bytes go: its blob in the cache, else its path in the folder
    (blocking: every path is checked against symlinks out of the folder)."""
    return {
        f.path: hfcache.blob_path(folder, f.etag)
        if cache
        else safe_path(folder, f.path, what="repo file name")
        for f in files
    }


def _excluded(spec: Spec) -> tuple[str, ...]:
    exclude = spec.options.get("exclude") or ()
    return (exclude,) if isinstance(exclude, str) else tuple(exclude)


def select_one(siblings: Collection[str], pattern: str) -> list[str]:
    """The repo paths one pattern names: itself, or what it matches as a glob."""
    if pattern in siblings:
        return [pattern]
    return sorted(p for p in siblings if fnmatch.fnmatch(p, pattern))


def select(
    siblings: Collection[str],
    patterns: tuple[str, ...] | None,
    repo_id: str,
    revision: str,
    exclude: Collection[str] = (),
) -> list[str]:
    """The repo paths a spec asks for: all, exact names, or globs (as ``allow_patterns``),
    less those matching an ``exclude`` glob (as ``ignore_patterns``)."""
    if exclude:
        siblings = [p for p in siblings if not any(fnmatch.fnmatch(p, x) for x in exclude)]
    if not patterns:
        return sorted(siblings)
    chosen: list[str] = []
    for pattern in patterns:
        matched = select_one(siblings, pattern)
        if not matched:
            raise NotFoundError(
                f"File '{pattern}' not found in model '{repo_id}' at revision '{revision}'"
            )
        chosen.extend(p for p in matched if p not in chosen)
    return chosen


def _asks_for_model(path: str, patterns: tuple[str, ...] | None) -> bool:
    """Whether the spec asks for the model ``path`` belongs to, so that its companions come
    too: one part of a split GGUF or sharded safetensors is a model file (however it was
    matched); a shard index is a request for its model only when named exactly (or when the
    whole repo is asked for). A glob matching an index asks for what it says, the index."""
    if _SPLIT.match(path):
        return True
    if path.endswith(".safetensors.index.json"):
        return not patterns or path in patterns
    return False


async def _with_companions(
    wanted: list[str],
    patterns: tuple[str, ...] | None,
    siblings: Collection[str],
    shards_of: Callable[[str], Awaitable[list[str]]],
    repo_id: str,
) -> list[str]:
    """A model asked for brings the files it only works with: one part of a split GGUF or
    sharded safetensors brings all the others (and their index), and an index every shard
    it names (``shards_of(index)``). Files matched only by a glob bring nothing more
    (``*.json`` is JSON files)."""
    out = list(wanted)
    for path in wanted:
        if not _asks_for_model(path, patterns):
            continue
        m = _SPLIT.match(path)
        if m:
            family = [
                p
                for p in siblings
                if (s := _SPLIT.match(p))
                and (s["stem"], s["n"], s["ext"]) == (m["stem"], m["n"], m["ext"])
            ]
            missing = int(m["n"]) - len(family)
            if missing:
                raise NotFoundError(
                    f"'{path}' is part {int(m['i'])} of {int(m['n'])} but {missing} part(s) "
                    f"are missing from model '{repo_id}'"
                )
            index = f"{m['stem']}.safetensors.index.json"
            out += [p for p in [*sorted(family), index] if p in siblings and p not in out]
        if path.endswith(".safetensors.index.json"):
            for shard in await shards_of(path):
                if shard not in siblings:
                    raise NotFoundError(
                        f"shard '{shard}' named by '{path}' is missing from model '{repo_id}'"
                    )
                if shard not in out:
                    out.append(shard)
    return out


async def _index_shards(
    url: str, auth: dict[str, str], session: aiohttp.ClientSession
) -> list[str]:
    async with session.get(url, headers=auth) as response:
        if response.status != 200:
            raise SourceError(f"cannot read the shard index {url}: HTTP {response.status}")
        return _shards_named(parse_json(await read_limited(response, INDEX_LIMIT, url), url), url)


def _cached_index_shards(index: Path) -> list[str]:
    """The shards a cached index names (blocking; as bounded as one from the Hub)."""
    with index.open("rb") as f:
        data = f.read(INDEX_LIMIT + 1)
    if len(data) > INDEX_LIMIT:
        raise SourceError(f"{index} is more than the {INDEX_LIMIT} bytes allowed")
    return _shards_named(parse_json(data, str(index)), str(index))


def _shards_named(data: Any, what: str) -> list[str]:
    weights = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weights, dict) or not all(isinstance(v, str) for v in weights.values()):
        raise SourceError(f"{what} is not a safetensors index (no weight_map of file names)")
    return sorted(set(weights.values()))


def _offline() -> bool:
    """huggingface_hub's offline mode (``HF_HUB_OFFLINE``), as it reads it itself."""
    from huggingface_hub import constants

    return constants.is_offline_mode()


def _stored_token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


def _link_all(spec: Spec, folder: Path, files: Sequence[RemoteFile]) -> None:
    commit = None
    for f in files:
        commit = f.meta["commit"]
        if f.meta["etag"] is None:
            continue  # a snapshot's own copy, served offline: already where it belongs
        for path in f.meta["paths"]:
            hfcache.link_snapshot(folder, commit, path, f.meta["etag"])
    if commit is not None:
        hfcache.write_ref(folder, spec.revision or "main", commit)
