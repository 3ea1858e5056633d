"""An emulated Ollama registry and an emulated Ollama server (the daemon).

The shapes follow ollama's own source (server/images.go, server/download.go, api/types.go,
types/model/name.go):

- ``Registry``: ``GET /v2/<namespace>/<model>/manifests/<tag>`` answers the manifest's exact
  bytes (``application/vnd.docker.distribution.manifest.v2+json``) or 404 ``MANIFEST_UNKNOWN``;
  ``GET /v2/<namespace>/<model>/blobs/sha256:<hex>`` answers 307 to a signed, expiring URL
  on a blob host (an ``Origin``: ranges, throttling, faults).
- ``Daemon``: ``POST /api/pull`` streams NDJSON like ``ollama serve``: ``pulling manifest``,
  ``pulling <digest[7:19]>`` lines with ``digest``/``total``/``completed``, ``verifying sha256
  digest``, ``writing manifest``, ``success``, or ``{"error": "…"}`` (an unknown model gives
  ``pull model manifest: file does not exist``). A client that hangs up stops the pull and
  leaves its partial blob, which the next pull continues. ``GET /api/tags`` lists the store,
  ``GET /api/version`` answers a version. The daemon pulls from a ``Registry``.

Both write and read the Ollama store layout: ``blobs/sha256-<hex>`` and
``manifests/<host>/<namespace>/<model>/<tag>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiofiles
import aiohttp
from aiohttp import web

from downloader.testing.origin import Origin

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
MODEL_LAYER = "application/vnd.ollama.image.model"


@dataclass
class RegistryModel:
    """One tag of one model: its manifest bytes and the blobs it names."""

    manifest: bytes
    blobs: dict[str, int] = field(default_factory=dict)  # digest -> size


class Registry:
    """The emulated registry (``registry.ollama.ai`` in miniature) with its blob host."""

    def __init__(self, workdir: Path, *, blob_throttle: int | None = None) -> None:
        self.workdir = workdir
        self.blob_host = Origin(throttle=blob_throttle, workdir=workdir)
        self.models: dict[tuple[str, str], RegistryModel] = {}  # (namespace/model, tag)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def add_model(
        self,
        name: str,
        layers: Sequence[tuple[str, bytes]],
        *,
        tag: str = "latest",
        family: str = "llama",
    ) -> bytes:
        """Publish ``namespace/model:tag`` with ``layers`` (media type, bytes) and a config
        blob; returns the manifest bytes."""
        entries = [self._blob(media, data) for media, data in layers]
        config = json.dumps(
            {
                "model_format": "gguf",
                "model_family": family,
                "model_families": [family],
                "model_type": "1B",
                "file_type": "Q4_K_M",
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [e["digest"] for e in entries]},
            }
        ).encode()
        config_entry = self._blob(CONFIG_TYPE, config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": config_entry,
                "layers": entries,
            }
        ).encode()
        blobs = {e["digest"]: e["size"] for e in [*entries, config_entry]}
        self.models[(name, tag)] = RegistryModel(manifest, blobs)
        return manifest

    def _blob(self, media: str, data: bytes) -> dict[str, object]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blob_host.put(digest.replace(":", "-"), data)
        return {"mediaType": media, "digest": digest, "size": len(data)}

    def corrupt(self, digest: str) -> None:
        """Serve other bytes of the same size for ``digest`` (a broken mirror)."""
        name = digest.replace(":", "-")
        data = self.blob_host.content(name)
        self.blob_host.put(name, bytes(b ^ 0x5A for b in data))

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the registry's name in manifest paths."""
        return self.url.split("://", 1)[1]

    async def start(self) -> Registry:
        await self.blob_host.start()
        app = web.Application()
        app.router.add_route("*", "/v2/{rest:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.blob_host.stop()

    async def __aenter__(self) -> Registry:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _dispatch(self, request: web.Request) -> web.Response:
        parts = request.match_info["rest"].split("/")
        if len(parts) == 4 and parts[2] == "manifests":
            model = self.models.get((f"{parts[0]}/{parts[1]}", parts[3]))
            if model is None:
                return _registry_error(404, "MANIFEST_UNKNOWN", "manifest unknown")
            digest = "sha256:" + hashlib.sha256(model.manifest).hexdigest()
            headers = {"Content-Type": MANIFEST_TYPE, "Docker-Content-Digest": digest}
            body = b"" if request.method == "HEAD" else model.manifest
            return web.Response(body=body, headers=headers)
        if len(parts) == 4 and parts[2] == "blobs":
            digest = parts[3]
            if not any(digest in m.blobs for m in self.models.values()):
                return _registry_error(404, "BLOB_UNKNOWN", "blob unknown to registry")
            location = self.blob_host.signed_url(digest.replace(":", "-"))
            return web.Response(status=307, headers={"Location": location})
        return _registry_error(404, "NAME_UNKNOWN", "repository name not known to registry")


def _registry_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"errors": [{"code": code, "message": message}]}, status=status)


class Daemon:
    """The emulated ``ollama serve``: pulls from ``registry`` into ``models`` (its store)."""

    VERSION = "0.12.6"

    def __init__(self, models: Path, registry: Registry) -> None:
        self.models = models
        self.registry = registry
        self.pulls: list[str] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> Daemon:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post("/api/pull", self._pull)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_get("/api/version", self._version)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> Daemon:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": self.VERSION})

    async def _tags(self, request: web.Request) -> web.Response:
        models = await asyncio.to_thread(self._list)
        return web.json_response({"models": models})

    def _list(self) -> list[dict[str, object]]:
        out = []
        root = self.models / "manifests"
        for path in sorted(root.glob("*/*/*/*")) if root.exists() else []:
            _host, namespace, model, tag = path.relative_to(root).parts
            data = path.read_bytes()
            manifest = json.loads(data)
            size = sum(x["size"] for x in manifest["layers"]) + manifest["config"]["size"]
            short = model if namespace == "library" else f"{namespace}/{model}"
            name = f"{short}:{tag}"
            out.append(
                {
                    "name": name,
                    "model": name,
                    "modified_at": datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(),
                    "size": size,
                    "digest": hashlib.sha256(data).hexdigest(),
                    "details": {
                        "format": "gguf",
                        "family": "llama",
                        "families": ["llama"],
                        "parameter_size": "1B",
                        "quantization_level": "Q4_K_M",
                    },
                }
            )
        return out

    async def _pull(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "missing request body"}, status=400)
        name = body.get("model") or body.get("name") or ""
        self.pulls.append(name)
        namespace_model, tag = _split_name(name)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)

        async def send(line: dict[str, object]) -> None:
            await response.write(json.dumps(line).encode() + b"\n")

        try:
            await send({"status": "pulling manifest"})
            manifest = await self._manifest(namespace_model, tag)
            if manifest is None:
                await send({"error": "pull model manifest: file does not exist"})
                return response
            parsed = json.loads(manifest)
            layers = [*parsed["layers"], parsed["config"]]
            fetched = []
            for layer in layers:
                if await self._blob(namespace_model, layer, send):
                    fetched.append(layer)
            await send({"status": "verifying sha256 digest"})
            for layer in fetched:
                problem = await asyncio.to_thread(self._verify, layer["digest"])
                if problem:
                    await send({"error": problem})
                    return response
            await send({"status": "writing manifest"})
            target = self.models / "manifests" / self.registry.host / namespace_model / tag
            await asyncio.to_thread(_write_atomically, target, manifest)
            await send({"status": "success"})
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the client hung up: stop here and keep the partial blob for the next pull
        return response

    async def _manifest(self, namespace_model: str, tag: str) -> bytes | None:
        assert self._session is not None
        url = f"{self.registry.url}/v2/{namespace_model}/manifests/{tag}"
        async with self._session.get(url, headers={"Accept": MANIFEST_TYPE}) as r:
            return await r.read() if r.status == 200 else None

    async def _blob(self, namespace_model: str, layer: dict, send) -> bool:  # type: ignore[no-untyped-def]
        """Fetch one blob (continuing a partial one); False if it was already there."""
        assert self._session is not None
        digest, total = layer["digest"], layer["size"]
        final = self.models / "blobs" / digest.replace(":", "-")
        partial = final.with_name(final.name + "-partial")
        status = f"pulling {digest[7:19]}"
        if final.exists():
            await send({"status": status, "digest": digest, "total": total, "completed": total})
            return False
        final.parent.mkdir(parents=True, exist_ok=True)
        have = partial.stat().st_size if partial.exists() else 0
        url = f"{self.registry.url}/v2/{namespace_model}/blobs/{digest}"
        headers = {"Range": f"bytes={have}-"} if have else {}
        last = 0.0
        async with (
            self._session.get(url, headers=headers) as r,
            aiofiles.open(partial, "ab") as f,
        ):
            async for data in r.content.iter_chunked(1 << 16):
                await f.write(data)
                have += len(data)
                if time.monotonic() - last > 0.06:  # ollama reports every 60 ms
                    last = time.monotonic()
                    await send(
                        {"status": status, "digest": digest, "total": total, "completed": have}
                    )
        os.replace(partial, final)
        await send({"status": status, "digest": digest, "total": total, "completed": total})
        return True

    def _verify(self, digest: str) -> str | None:
        path = self.models / "blobs" / digest.replace(":", "-")
        actual = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != digest:
            path.unlink()
            return f"digest mismatch, file must be downloaded again: want {digest}, got {actual}"
        return None


def _split_name(name: str) -> tuple[str, str]:
    """``gemma3:1b`` → (``library/gemma3``, ``1b``), as ollama's ParseName defaults it."""
    tag = "latest"
    if name.rfind(":") > name.rfind("/"):
        name, tag = name.rsplit(":", 1)
    parts = name.split("/")
    namespace = parts[-2] if len(parts) >= 2 else "library"
    return f"{namespace}/{parts[-1]}", tag


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
