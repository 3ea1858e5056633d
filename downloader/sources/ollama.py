"""Ollama models, two ways.

- **daemon**: ask a running ``ollama serve`` (``OLLAMA_HOST``, or ``base_url``) to pull, and
  turn its NDJSON stream into our progress. Pausing hangs up (the daemon keeps its partial
  files); resuming pulls again.
- **registry**: no daemon needed. The manifest comes from the registry
  (``MODELHAUL_OLLAMA_REGISTRY``, or a host in the name), the config and layer blobs come
  through our engine (many connections, resumable, each verified against its sha256 digest)
  into Ollama's own store (``OLLAMA_MODELS`` or ``~/.ollama/models``): ``blobs/sha256-<hex>``,
  and last, atomically, ``manifests/<host>/<namespace>/<model>/<tag>``, so a real Ollama sees
  the model only once it is whole. Blobs already in the store are not fetched again.

With neither chosen (option ``via``), the daemon is used when one answers, else the registry.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from downloader.durable import write_atomically
from downloader.errors import NotFoundError, SourceError, SpecError
from downloader.paths import safe_path
from downloader.progress import DownloadStatus
from downloader.settings import Settings
from downloader.sources.base import (
    LayerUpdate,
    PhaseUpdate,
    RemoteFile,
    Resolution,
    SourceContext,
    Update,
)
from downloader.sources.bodies import MANIFEST_LIMIT, read_limited, read_message
from downloader.specs import Spec

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
DEFAULT_HOST = "registry.ollama.ai"


@dataclass(frozen=True)
class OllamaName:
    """A fully qualified model name and the registry it comes from."""

    base: str  # scheme://host[:port] of the registry
    host: str  # host[:port], the first folder of the manifest path
    namespace: str
    model: str
    tag: str

    @property
    def manifest_url(self) -> str:
        return f"{self.base}/v2/{self.namespace}/{self.model}/manifests/{self.tag}"

    def blob_url(self, digest: str) -> str:
        return f"{self.base}/v2/{self.namespace}/{self.model}/blobs/{digest}"

    @property
    def manifest_path(self) -> Path:
        return Path("manifests", self.host, self.namespace, self.model, self.tag)

    @property
    def short(self) -> str:
        name = self.model if self.namespace == "library" else f"{self.namespace}/{self.model}"
        return f"{name}:{self.tag}"


def parse_name(text: str, registry: str, *, insecure: bool = False) -> OllamaName:
    """``[host[:port]/][namespace/]model[:tag]`` with ollama's defaults (namespace
    ``library``, tag ``latest``); a name without a host comes from ``registry``."""
    name, tag = text.strip(), "latest"
    if name.rfind(":") > name.rfind("/"):
        name, tag = name.rsplit(":", 1)
    parts = name.split("/")
    model = parts[-1]
    namespace = parts[-2] if len(parts) >= 2 else "library"
    if len(parts) == 3:
        host = parts[0]
        scheme = "http" if _loopback(host) or insecure else "https"
        base = f"{scheme}://{host}"
    else:
        base = registry.rstrip("/")
        split = urlsplit(base)
        host = DEFAULT_HOST if split.hostname == DEFAULT_HOST else split.netloc
    split = urlsplit(base)
    if split.scheme == "http" and not (_loopback(split.netloc) or insecure):
        raise SpecError(
            f"registry {base} is plain http: allowed only on this machine, or with insecure=True"
        )
    return OllamaName(base, host, namespace, model, tag)


def _loopback(netloc: str) -> bool:
    host = (
        netloc.rsplit(":", 1)[0].strip("[]")
        if not netloc.startswith("[")
        else netloc[1:].split("]")[0]
    )
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OllamaSource:
    """Provider ``ollama``."""

    provider = "ollama"
    folder_destination = True

    def destination(self, spec: Spec, dest: str | None, settings: Settings) -> Path:
        return Path(dest).expanduser().absolute() if dest else settings.ollama_models_dir

    async def delegate(self, spec: Spec, ctx: SourceContext) -> AsyncIterator[Update] | None:
        """The pull through the daemon when that is the way; None leaves it to the engine."""
        base = (spec.options.get("base_url") or ctx.settings.ollama_host).rstrip("/")
        via = spec.options.get("via")
        if via not in (None, "daemon", "registry"):
            raise SpecError(f"via must be 'daemon' or 'registry', not {via!r}")
        if via == "registry" or (via is None and not await _daemon_answers(ctx.session, base)):
            return None
        return _pull_through_daemon(ctx.session, base, spec)

    async def resolve(self, spec: Spec, destination: Path, ctx: SourceContext) -> Resolution:
        insecure = bool(spec.options.get("insecure"))
        name = parse_name(spec.source, ctx.settings.ollama_registry, insecure=insecure)
        manifest_path = await asyncio.to_thread(_manifest_target, destination, name)
        manifest = spec.options.get("manifest") or await _fetch_manifest(ctx.session, name)
        layers = parse_manifest(manifest, name, ctx.settings.max_file_size)
        files: dict[str, RemoteFile] = {}
        for layer in layers:
            blob = layer.digest.replace(":", "-")
            files.setdefault(
                blob,
                RemoteFile(
                    urls=(name.blob_url(layer.digest),),
                    name=blob,
                    target=destination / "blobs" / blob,
                    size=layer.size,
                    sha256=layer.digest[7:],
                    # Named by its digest and only ever renamed into place once verified:
                    # a blob of the right size already there is that blob.
                    content_addressed=True,
                    meta={"media_type": layer.media_type},
                ),
            )
        pins = {"manifest": manifest, "manifest_path": str(manifest_path.relative_to(destination))}
        return Resolution(tuple(files.values()), {}, pins)

    async def finish(
        self, spec: Spec, destination: Path, resolution: Resolution, ctx: SourceContext
    ) -> None:
        """Every blob is in and verified: now, and only now, write the manifest."""
        pins = resolution.pins
        target = await asyncio.to_thread(
            safe_path, destination, pins["manifest_path"], what="manifest path"
        )
        await asyncio.to_thread(write_atomically, target, pins["manifest"].encode())


@dataclass(frozen=True)
class Layer:
    """One blob a manifest names: its digest (``sha256:<64 hex>``), size and media type."""

    digest: str
    size: int
    media_type: str


DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def parse_manifest(manifest: str, name: OllamaName, max_size: int) -> list[Layer]:
    """The layers and config of a registry manifest, every field checked: a digest is
    ``sha256:`` and 64 lowercase hex digits (it becomes a file name), a size a whole number
    from 0 to ``max_size``. Anything else is a ``SourceError`` naming the model."""
    where = f"the manifest of {name.short} from {name.base}"
    try:
        parsed = json.loads(manifest)
    except (ValueError, RecursionError) as e:
        raise SourceError(f"{where} is not JSON: {str(e)[:200]}") from None
    if not isinstance(parsed, dict):
        raise SourceError(f"{where} is not a JSON object")
    layers, config = parsed.get("layers"), parsed.get("config")
    if not isinstance(layers, list) or not isinstance(config, dict):
        raise SourceError(f"{where} has no list of layers and config object")
    out = []
    for entry in [*layers, config]:
        if not isinstance(entry, dict):
            raise SourceError(f"{where} has a layer that is not an object: {entry!r:.80}")
        digest, size = entry.get("digest"), entry.get("size")
        media = entry.get("mediaType", "")
        if not isinstance(digest, str) or not DIGEST.match(digest):
            raise SourceError(f"{where} names a bad digest {digest!r:.100}")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= max_size:
            raise SourceError(
                f"{where} gives layer {digest[7:19]} the size {size!r:.40}: not a whole number "
                f"from 0 to {max_size}"
            )
        out.append(Layer(digest, size, media if isinstance(media, str) else ""))
    return out


def _manifest_target(store: Path, name: OllamaName) -> Path:
    """``manifests/<host>/<namespace>/<model>/<tag>`` in the store (blocking: resolves
    links), every part a single safe path segment."""
    for part in (name.host, name.namespace, name.model, name.tag):
        if "/" in part:
            raise SourceError(f"the Ollama name {name.short} has a '/' in {part!r}")
    return safe_path(store, name.manifest_path.as_posix(), what="manifest path")


async def _daemon_answers(session: aiohttp.ClientSession, base: str) -> bool:
    try:
        async with session.get(
            f"{base}/api/version", timeout=aiohttp.ClientTimeout(total=2)
        ) as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False


async def _fetch_manifest(session: aiohttp.ClientSession, name: OllamaName) -> str:
    try:
        async with session.get(name.manifest_url, headers={"Accept": MANIFEST_TYPE}) as r:
            if r.status == 404:
                raise NotFoundError(
                    f"Model '{name.short}' not found in the Ollama registry at {name.base} "
                    "(pull model manifest: file does not exist)"
                )
            if r.status != 200:
                raise SourceError(
                    f"the Ollama registry at {name.base} answered HTTP {r.status} for "
                    f"{name.short}: {(await read_message(r))[:200]}"
                )
            what = f"the manifest of {name.short} from {name.base}"
            body = await read_limited(r, MANIFEST_LIMIT, what)
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        raise SourceError(f"cannot reach the Ollama registry at {name.base}: {e}") from e
    try:
        return body.decode()
    except UnicodeDecodeError:
        raise SourceError(f"the manifest of {name.short} from {name.base} is not UTF-8") from None


async def _pull_through_daemon(
    session: aiohttp.ClientSession, base: str, spec: Spec
) -> AsyncIterator[Update]:
    body = {"model": spec.source, "stream": True}
    if spec.options.get("insecure"):
        body["insecure"] = True
    yield PhaseUpdate(DownloadStatus.DOWNLOADING, f"Pulling {spec.source} through {base}")
    succeeded = False
    try:
        async with session.post(f"{base}/api/pull", json=body) as response:
            if response.status != 200:
                text = await read_message(response)
                raise SourceError(_daemon_error(text) or f"Ollama answered HTTP {response.status}")
            async for raw in response.content:
                line = raw.strip()
                if not line:
                    continue
                update, success = _daemon_line(_daemon_json(line, base), base)
                succeeded = succeeded or success
                if update is not None:
                    yield update
    except (aiohttp.ClientConnectorError, ConnectionRefusedError) as e:
        raise SourceError(f"Cannot connect to Ollama server at {base}") from e
    except aiohttp.ClientError as e:
        raise SourceError(f"the Ollama server at {base} broke off the pull: {e}") from e
    except (ValueError, HttpProcessingError) as e:  # aiohttp's line reader: past its limit
        raise SourceError(
            f"the Ollama server at {base} sent a line too long to read (over 128 KiB)"
        ) from e
    if not succeeded:
        raise SourceError(f"the Ollama server at {base} ended the pull without success")
    yield PhaseUpdate(DownloadStatus.VERIFYING, f"Pulled {spec.source} through {base}")


def _daemon_json(line: bytes, base: str) -> dict[str, Any]:
    """One NDJSON line as an object, or a ``SourceError`` saying what the daemon sent."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        shown = line[:80].decode("utf-8", "replace")
        raise SourceError(
            f"the Ollama server at {base} sent a line that is not JSON: {shown!r}"
        ) from None
    if not isinstance(data, dict):
        raise SourceError(
            f"the Ollama server at {base} sent {type(data).__name__} where a JSON object belongs"
        )
    return data


def _daemon_line(data: dict[str, Any], base: str) -> tuple[Update | None, bool]:
    """What one NDJSON line reports, and whether it is the final ``success``."""
    if "error" in data:
        raise SourceError(str(data["error"])[:500])
    status = data.get("status", "")
    if not isinstance(status, str):
        raise SourceError(f"the Ollama server at {base} sent a status that is not text")
    digest, total, completed = data.get("digest"), data.get("total"), data.get("completed", 0)
    if digest and total:
        for field, value in (("total", total), ("completed", completed)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SourceError(
                    f"the Ollama server at {base} sent {field} {value!r:.40} for a layer: not a "
                    "whole number of bytes"
                )
        if not isinstance(digest, str):
            raise SourceError(f"the Ollama server at {base} sent a digest that is not text")
        name = digest.removeprefix("sha256:")[:12]
        return LayerUpdate(name, total, min(completed, total)), False
    if status in ("verifying sha256 digest", "writing manifest", "removing unused layers"):
        return PhaseUpdate(DownloadStatus.VERIFYING, status), False
    if status and status != "success":
        return PhaseUpdate(DownloadStatus.DOWNLOADING, status[:200]), False
    return None, status == "success"


def _daemon_error(text: str) -> str | None:
    try:
        return str(json.loads(text)["error"])[:500]
    except (ValueError, KeyError, TypeError, IndexError, RecursionError):
        return None
