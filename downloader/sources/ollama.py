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
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from downloader.errors import NotFoundError, SourceError, SpecError
from downloader.progress import DownloadStatus
from downloader.settings import Settings
from downloader.sources.base import ExternalProgress, Resolution, SourceContext
from downloader.specs import Spec
from storage import FileRecord, NewFile, TaskRecord

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

    async def run_elsewhere(
        self, task: TaskRecord, ctx: SourceContext, progress: ExternalProgress
    ) -> bool:
        """Pull through the daemon when that is the way; False leaves it to the engine."""
        base = (task.options.get("base_url") or ctx.settings.ollama_host).rstrip("/")
        via = task.options.get("via")
        if via not in (None, "daemon", "registry"):
            raise SpecError(f"via must be 'daemon' or 'registry', not {via!r}")
        if via == "registry" or (via is None and not await _daemon_answers(ctx.session, base)):
            return False
        await _pull_through_daemon(ctx.session, base, task, progress)
        return True

    async def resolve(self, task: TaskRecord, ctx: SourceContext) -> Resolution:
        insecure = bool(task.options.get("insecure"))
        name = parse_name(task.source, ctx.settings.ollama_registry, insecure=insecure)
        manifest = task.options.get("manifest") or await _fetch_manifest(ctx.session, name)
        try:
            parsed = json.loads(manifest)
            entries = [*parsed["layers"], parsed["config"]]
            digests = [(e["digest"], int(e["size"]), e.get("mediaType", "")) for e in entries]
        except (ValueError, KeyError, TypeError) as e:
            raise SourceError(
                f"the manifest of {name.short} from {name.base} is unreadable: {e}"
            ) from e
        store = Path(task.destination)
        files: dict[str, NewFile] = {}
        for digest, size, media in digests:
            if not digest.startswith("sha256:") or len(digest) != 71:
                raise SourceError(f"the manifest of {name.short} names a bad digest {digest!r}")
            blob = digest.replace(":", "-")
            files.setdefault(
                blob,
                NewFile(
                    url=name.blob_url(digest),
                    relpath=blob,
                    local_path=str(store / "blobs" / blob),
                    block_size=ctx.settings.block_size,
                    size=size,
                    expected_sha256=digest[7:],
                    # Named by its digest and only ever renamed into place once verified:
                    # a blob of the right size already there is that blob.
                    meta={"media_type": media, "content_addressed": True},
                ),
            )
        pins = {"manifest": manifest, "manifest_path": str(name.manifest_path)}
        return Resolution(list(files.values()), {}, pins)

    async def finish(
        self, task: TaskRecord, files: Sequence[FileRecord], ctx: SourceContext
    ) -> None:
        """Every blob is in and verified: now, and only now, write the manifest."""
        target = Path(task.destination) / task.options["manifest_path"]
        await asyncio.to_thread(_write_durably, target, task.options["manifest"].encode())


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
            body = await r.text()
            if r.status == 404:
                raise NotFoundError(
                    f"Model '{name.short}' not found in the Ollama registry at {name.base} "
                    "(pull model manifest: file does not exist)"
                )
            if r.status != 200:
                raise SourceError(
                    f"the Ollama registry at {name.base} answered HTTP {r.status} for "
                    f"{name.short}: {body[:200]}"
                )
            return body
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        raise SourceError(f"cannot reach the Ollama registry at {name.base}: {e}") from e


async def _pull_through_daemon(
    session: aiohttp.ClientSession, base: str, task: TaskRecord, progress: ExternalProgress
) -> None:
    body = {"model": task.source, "stream": True}
    if task.options.get("insecure"):
        body["insecure"] = True
    progress.phase(DownloadStatus.DOWNLOADING, f"Pulling {task.source} through {base}")
    succeeded = False
    try:
        async with session.post(f"{base}/api/pull", json=body) as response:
            if response.status != 200:
                text = await response.text()
                raise SourceError(_daemon_error(text) or f"Ollama answered HTTP {response.status}")
            async for raw in response.content:
                line = raw.strip()
                if line:
                    succeeded = _daemon_line(json.loads(line), progress) or succeeded
    except (aiohttp.ClientConnectorError, ConnectionRefusedError) as e:
        raise SourceError(f"Cannot connect to Ollama server at {base}") from e
    except aiohttp.ClientError as e:
        raise SourceError(f"the Ollama server at {base} broke off the pull: {e}") from e
    if not succeeded:
        raise SourceError(f"the Ollama server at {base} ended the pull without success")
    progress.phase(DownloadStatus.VERIFYING, f"Pulled {task.source} through {base}")


def _daemon_line(data: dict, progress: ExternalProgress) -> bool:  # type: ignore[type-arg]
    """Report one NDJSON line; True for the final ``success``."""
    if "error" in data:
        raise SourceError(str(data["error"]))
    status = str(data.get("status", ""))
    if data.get("digest") and data.get("total"):
        progress.layer(data["digest"][7:19], int(data["total"]), int(data.get("completed", 0)))
    elif status in ("verifying sha256 digest", "writing manifest", "removing unused layers"):
        progress.phase(DownloadStatus.VERIFYING, status)
    elif status and status != "success":
        progress.phase(DownloadStatus.DOWNLOADING, status)
    return status == "success"


def _daemon_error(text: str) -> str | None:
    try:
        return str(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        return None


def _write_durably(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.modelhaul")
    with temporary.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
