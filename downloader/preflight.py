"""Before downloading: how big will it be, and will it work here?

``estimate_download_size`` asks the source (Hugging Face metadata, the Ollama manifest, or a
one-byte ranged GET of a URL: unlike HEAD it works on signed CDN URLs too) without writing
any file (a Hugging Face repo's empty cache folders aside). ``validate`` turns that into
reasons a download would fail (no room on the disk at the destination, with a ``margin``
that grows with the download) or warnings (the model is larger than this machine's memory,
a format modelhaul cannot check).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from downloader.engine.http import Resource, open_session
from downloader.engine.partfile import partial_path
from downloader.engine.probe import probe
from downloader.errors import TooLargeError
from downloader.headers import split_credentials
from downloader.progress import format_bytes
from downloader.settings import MiB, Settings
from downloader.sources import Resolution, SourceContext, source_for
from downloader.specs import Spec, parse_spec

# Room left free beyond the download itself, so that it does not fill the disk to the last
# byte (the ledger, logs and everything else on that disk still need to write): 1 % of the
# download plus 4 MiB, at most 1 GiB. It grows with the download, so a small file fits a
# small disk (a 6-byte file needs 4 MiB free), and a 500 GB model asks for 1 GiB, not 5 GB.
MARGIN_FLOOR = 4 * MiB
MARGIN_SHARE = 100  # 1 / 100 of the download
MARGIN_CAP = 1024 * MiB


@dataclass(frozen=True)
class SizeEstimate:
    """What a spec would download."""

    spec: str
    total_bytes: int | None  # None: a file of unknown size
    files: list[tuple[str, int | None]]  # relative path, size
    destination: Path
    # What the source answered: hand it to DownloadManager.add so the download does not
    # ask the network the same question again.
    resolution: Resolution | None = None


@dataclass(frozen=True)
class Validation:
    """The verdict before a download: ``problems`` stop it, ``warnings`` do not."""

    estimate: SizeEstimate | None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    free_bytes: int | None = None
    needed_bytes: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


async def estimate_download_size(
    spec: str | Spec,
    *,
    settings: Settings | None = None,
    dest: str | None = None,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> SizeEstimate:
    """The files ``spec`` resolves to and their sizes (no file is written). ``headers``:
    the user's own (``-H``), sent as a download would send them."""
    settings = settings or Settings.from_env()
    parsed = spec if isinstance(spec, Spec) else parse_spec(spec)
    source = source_for(parsed.provider)
    destination = source.destination(parsed, dest, settings)
    credentials, others = split_credentials(headers or {})
    # A few metadata requests: a small pool of its own, not the downloads' one.
    async with open_session(settings.engine(max_connections=8, max_per_host=8)) as session:
        ctx = SourceContext(settings, session, token)
        resolution = await source.resolve(parsed, destination, ctx)
        files = []
        for f in resolution.files:
            size = f.size
            if size is None:
                resource = Resource(
                    session,
                    f.url,
                    auth_headers={**resolution.auth_headers, **credentials},
                    headers=others,
                )
                size = (await probe(resource)).size
            files.append((f.name, size))
    sizes = [size for _, size in files]
    total = None if None in sizes else sum(s for s in sizes if s is not None)
    return SizeEstimate(parsed.label, total, files, destination, resolution)


async def validate(
    spec: str | Spec,
    *,
    settings: Settings | None = None,
    dest: str | None = None,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Validation:
    """Why downloading ``spec`` to ``dest`` would fail, or what to watch out for."""
    settings = settings or Settings.from_env()
    try:
        estimate = await estimate_download_size(
            spec, settings=settings, dest=dest, token=token, headers=headers
        )
    except Exception as e:
        return Validation(None, problems=[str(e)])
    problems, warnings = [], []
    if not estimate.files:
        problems.append(f"{estimate.spec} matches no files")
    too_large = [
        str(TooLargeError(relpath, size, settings.max_file_size, "the source gives"))
        for relpath, size in estimate.files
        if size is not None and size > settings.max_file_size
    ]
    if too_large:  # nothing else about such a download is worth saying
        return Validation(estimate, too_large)
    free, needed = await asyncio.to_thread(_room, estimate)
    if needed is not None and free is not None and needed > free:
        problems.append(
            f"not enough disk space at {_existing(estimate.destination)}: the download needs "
            f"{format_bytes(needed)} ({needed} bytes, with a margin of "
            f"{format_bytes(margin(estimate.total_bytes or 0))}) but only {format_bytes(free)} "
            f"({free} bytes) is free"
        )
    memory = _memory()
    if estimate.total_bytes and memory and estimate.total_bytes > memory:
        warnings.append(
            f"{estimate.spec} is {format_bytes(estimate.total_bytes)}, more than this "
            f"machine's {format_bytes(memory)} of memory: it may not load"
        )
    unknown = [p for p, _ in estimate.files if p.endswith((".pt", ".pth", ".ckpt", ".pkl"))]
    if unknown:
        warnings.append(
            f"{', '.join(unknown[:3])}: a pickle-era format modelhaul cannot check beyond its "
            "digest (prefer GGUF or safetensors)"
        )
    if estimate.total_bytes is None:
        warnings.append("the server does not say how big it is: the disk check was skipped")
    return Validation(estimate, problems, warnings, free, needed)


def margin(total: int) -> int:
    """The free space a download of ``total`` bytes must leave on its disk."""
    return min(MARGIN_CAP, MARGIN_FLOOR + total // MARGIN_SHARE)


def _room(estimate: SizeEstimate) -> tuple[int | None, int | None]:
    """Free bytes at the destination, and what the download still needs there (what is
    already present, complete or partial, does not count twice)."""
    if estimate.total_bytes is None:
        return None, None
    present = 0
    for target, suffix, size in _targets(estimate):
        for path in (target, partial_path(target, suffix), partial_path(target)):
            if path.is_file():
                present += min(path.stat().st_size, size or 0)
                break
    free = shutil.disk_usage(_existing(estimate.destination)).free
    return free, max(0, estimate.total_bytes - present) + margin(estimate.total_bytes)


def _targets(estimate: SizeEstimate) -> list[tuple[Path, str | None, int | None]]:
    """Each file's final path (where its source puts it: a folder's file, a Hugging Face or
    Ollama blob), the suffix of its partial file, and its size."""
    remote = estimate.resolution.files if estimate.resolution is not None else ()
    return [
        (f.target, f.partial_suffix, size)
        for f, (_, size) in zip(remote, estimate.files, strict=True)
    ]


def _existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


__all__ = ["SizeEstimate", "Validation", "estimate_download_size", "margin", "validate"]
