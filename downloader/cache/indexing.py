"""``cache scan``: put the files of the Hugging Face cache and the Ollama store into the
content index, so that a download can reuse them (``downloader.manager.reuse``).

A digest in a file's name is a claim, not a fact. An Ollama blob ``sha256-<hex>`` is taken
at its word when its size is the one a manifest gives that digest (the store renames a blob
into place only once verified, and a manifest is written after its blobs); a Hugging Face
blob named by an LFS SHA-256 has no size on record beside it, so its SHA-256 is computed.
Either way, reuse reads the digest again before it trusts a file. Blocking parts run in
threads.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from downloader.durable import sha256_of
from storage import Ledger

LFS_BLOB = re.compile(r"^[0-9a-f]{64}$")
OLLAMA_BLOB = re.compile(r"^sha256-([0-9a-f]{64})$")


@dataclass(frozen=True)
class Claim:
    """A file that says it holds ``sha256``; ``settled``: its store's naming and a recorded
    size make the claim (else it is hashed before it is indexed)."""

    path: Path
    sha256: str
    size: int
    mtime_ns: int
    settled: bool


@dataclass(frozen=True)
class IndexScan:
    """What a scan did: files indexed, of them hashed, already indexed as they are, and
    files whose bytes are not what their name says (not indexed)."""

    indexed: int = 0
    hashed: int = 0
    unchanged: int = 0
    mismatched: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """As ``cache scan --json`` shows it."""
        return {
            "indexed": self.indexed,
            "hashed": self.hashed,
            "unchanged": self.unchanged,
            "mismatched": self.mismatched,
        }


async def index_stores(ledger: Ledger, hf_cache: Path, ollama_models: Path) -> IndexScan:
    """Index every blob of both stores whose digest holds (see the module's docstring)."""
    claims = await asyncio.to_thread(_claims, hf_cache, ollama_models)
    known = {e.path: e for e in await ledger.contents.all()}
    indexed = hashed = unchanged = 0
    mismatched: list[str] = []
    for c in claims:
        was = known.get(str(c.path))
        if was and (was.sha256, was.size, was.mtime_ns) == (c.sha256, c.size, c.mtime_ns):
            unchanged += 1
            continue
        if not c.settled:
            hashed += 1
            try:
                got = await asyncio.to_thread(sha256_of, c.path)
            except OSError:
                continue
            if got != c.sha256:
                mismatched.append(str(c.path))
                if was:
                    await ledger.contents.drop(str(c.path))
                continue
        origin = "scan: Ollama store" if c.settled else "scan: Hugging Face cache (hashed)"
        await ledger.contents.add(str(c.path), c.sha256, c.size, c.mtime_ns, origin)
        indexed += 1
    return IndexScan(indexed, hashed, unchanged, mismatched)


def _claims(hf_cache: Path, ollama_models: Path) -> list[Claim]:
    return [*_hf_claims(hf_cache), *_ollama_claims(ollama_models)]


def _hf_claims(cache: Path) -> list[Claim]:
    out = []
    for blobs in sorted(cache.glob("models--*/blobs")) if cache.is_dir() else []:
        for blob in sorted(blobs.iterdir()):
            if LFS_BLOB.match(blob.name) and (st := _regular(blob)):
                out.append(Claim(blob, blob.name, st.st_size, st.st_mtime_ns, settled=False))
    return out


def _ollama_claims(models: Path) -> list[Claim]:
    """Blobs whose size is the one a manifest gives their digest."""
    sizes: dict[str, int] = {}
    root = models / "manifests"
    for manifest in sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []:
        try:
            data = json.loads(manifest.read_bytes()[: 1 << 20])
            layers = [*data.get("layers", []), data.get("config") or {}]
        except (OSError, ValueError, AttributeError):
            continue
        for layer in layers:
            if not isinstance(layer, dict):
                continue
            digest, size = str(layer.get("digest", "")), layer.get("size")
            if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
                sizes[digest.replace(":", "-")] = size
    out = []
    for name, size in sorted(sizes.items()):
        m = OLLAMA_BLOB.match(name)
        blob = models / "blobs" / name
        if m and (st := _regular(blob)) and st.st_size == size:
            out.append(Claim(blob, m.group(1), size, st.st_mtime_ns, settled=True))
    return out


def _regular(path: Path) -> os.stat_result | None:
    """The file's stat if it is a regular file (not a link, not a folder), else None."""
    try:
        st = path.lstat()
    except OSError:
        return None
    return st if os.path.isfile(path) and not path.is_symlink() else None
