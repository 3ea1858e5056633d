"""A local Hugging Face Hub that the real ``huggingface_hub`` client downloads from.

    hub = Hub(workdir)
    commit = hub.add_repo("org/model", {"config.json": b"{}", "model.gguf": path})
    async with hub:                       # HF_ENDPOINT=hub.endpoint for the real client
        ...

It speaks the endpoints and headers huggingface_hub 2.x uses (checked against its source):

- ``GET /api/models/{repo}[/revision/{rev}][?blobs=true]``: ``id``, ``sha``, ``gated``,
  ``siblings`` (``rfilename``, and with ``blobs`` ``size``, ``blobId``, ``lfs{size, sha256,
  pointerSize}``).
- ``GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=…``: ``type``, ``oid``, ``size``,
  ``path``, ``lfs{oid, size, pointerSize}``; paged with ``Link: <…>; rel="next"``.
- ``HEAD|GET /{repo}/resolve/{rev}/{path}``: small files answered here (``ETag`` = git blob
  id, ``X-Repo-Commit``, ranges); LFS files answered ``302`` to a signed, expiring URL on a
  separate "CDN" origin, with ``X-Linked-Etag`` (the sha256) and ``X-Linked-Size``.
- Errors with ``X-Error-Code`` / ``X-Error-Message``: ``RepoNotFound``, ``RevisionNotFound``,
  ``EntryNotFound``, and ``GatedRepo`` (401) for a gated repo's files without a valid token.

No ``X-Xet-*`` header is ever sent, so clients use plain HTTP. The CDN is an ``Origin``
(``hub.cdn``): throttle it, inject faults, and read the headers it received.

Run standalone: ``python -m downloader.testing.hub DIR`` serves ``DIR/<owner>/<name>/…``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, unquote

from aiohttp import web

from downloader.testing.hubfiles import HubFile, HubRepo, describe, lookup, repo_files
from downloader.testing.origin import Origin, RequestLog


class Hub:
    """The local hub: an aiohttp app for the API and resolve endpoints, plus a CDN origin."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        tokens: frozenset[str] | set[str] = frozenset(),
        page_size: int = 1000,
        cdn_throttle: int | None = None,
        signed_ttl: float = 600.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._made_workdir = workdir is None  # removed with the hub when it made it
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="modelhaul-hub-"))
        self.tokens = frozenset(tokens)
        self.page_size = page_size
        self.repos: dict[str, HubRepo] = {}
        self.cdn = Origin(throttle=cdn_throttle, signed_ttl=signed_ttl, workdir=self.workdir)
        self.log: list[RequestLog] = []
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.endpoint = ""

    # --- content ------------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes | Path],
        *,
        revision: str = "main",
        gated: bool = False,
    ) -> str:
        """Publish ``files`` as ``revision`` of ``repo_id``; returns the commit id. Blocking:
        it hashes every file (call it before starting, or in a thread)."""
        repo = self.repos.setdefault(repo_id, HubRepo(repo_id))
        repo.gated = repo.gated or gated
        entries: dict[str, HubFile] = {}
        for path, content in sorted(files.items()):
            source = self._store(repo_id, revision, path, content)
            entries[path] = describe(path, source)
        listing = "\n".join(f"{p} {f.blob_id}" for p, f in entries.items())
        commit = hashlib.sha1(f"{repo_id}\n{revision}\n{listing}".encode()).hexdigest()
        repo.commits[commit] = entries
        repo.refs[revision] = commit
        for entry in entries.values():
            if entry.lfs_sha256 is not None:
                self.cdn.put(entry.lfs_sha256, entry.source)
        return commit

    def _store(self, repo_id: str, revision: str, path: str, content: bytes | Path) -> Path:
        if isinstance(content, Path):
            return content
        target = self.workdir / "content" / repo_id / quote(revision, safe="") / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        return target

    def file(self, repo_id: str, path: str, revision: str = "main") -> HubFile:
        """A published file (for assertions)."""
        repo = self.repos[repo_id]
        return repo.commits[repo.refs.get(revision, revision)][path]

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> Hub:
        """Start the CDN and the hub on free ports (or ``port``)."""
        await self.cdn.start()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server  # aiohttp keeps the listening socket here
        assert server is not None and server.sockets
        self.endpoint = f"http://{self._host}:{server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        """Stop the hub and its CDN."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.cdn.stop()
        if self._made_workdir:
            await asyncio.to_thread(shutil.rmtree, self.workdir, True)

    async def __aenter__(self) -> Hub:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- routing ------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        # Work on the raw path: a revision may hold an encoded '/' (refs%2Fpr%2F1).
        raw = request.raw_path.split("?", 1)[0]
        parts = [unquote(p) for p in raw.strip("/").split("/")]
        response: web.StreamResponse
        if request.method == "GET" and parts[:2] == ["api", "models"] and len(parts) >= 4:
            response = self._api(request, parts[2:])
        elif request.method in ("GET", "HEAD") and len(parts) >= 5 and parts[2] == "resolve":
            response = await self._resolve(request, f"{parts[0]}/{parts[1]}", parts[3], parts[4:])
        else:
            response = _error(404, "", f"no route for {request.method} {raw}")
        self.log.append(
            RequestLog(
                request.method,
                request.path,
                dict(request.headers),
                response.status,
                request.headers.get("Range"),
                asyncio.get_running_loop().time(),
            )
        )
        return response

    def _api(self, request: web.Request, parts: list[str]) -> web.Response:
        repo_id = f"{parts[0]}/{parts[1]}"
        repo = self.repos.get(repo_id)
        if repo is None:
            return _error(404, "RepoNotFound", f"Repository {repo_id} not found")
        rest = parts[2:]
        if not rest or rest[0] == "revision":
            revision = rest[1] if len(rest) > 1 else "main"
            commit = lookup(repo, revision)
            if commit is None:
                return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            blobs = request.query.get("blobs", "").lower() in ("1", "true")
            return web.json_response(self._model_info(repo, commit, blobs))
        if rest[0] == "tree" and len(rest) >= 2:
            commit = lookup(repo, rest[1])
            if commit is None:
                return _error(404, "RevisionNotFound", f"Invalid rev id: {rest[1]}")
            return self._tree(request, repo, commit, "/".join(rest[2:]))
        return _error(404, "", f"unknown API route for {repo_id}: {'/'.join(rest)}")

    def _model_info(self, repo: HubRepo, commit: str, blobs: bool) -> dict[str, object]:
        siblings = []
        for entry in repo.commits[commit].values():
            sibling: dict[str, object] = {"rfilename": entry.path}
            if blobs:
                sibling |= {"size": entry.size, "blobId": entry.blob_id}
                if entry.lfs_sha256 is not None:
                    sibling["lfs"] = {
                        "size": entry.size,
                        "sha256": entry.lfs_sha256,
                        "pointerSize": entry.pointer_size,
                    }
            siblings.append(sibling)
        return {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit,
            "private": False,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "tags": [],
            "siblings": siblings,
        }

    def _tree(self, request: web.Request, repo: HubRepo, commit: str, folder: str) -> web.Response:
        recursive = request.query.get("recursive", "").lower() in ("1", "true")
        prefix = f"{folder}/" if folder else ""
        items: dict[str, dict[str, object]] = {}
        for entry in repo.commits[commit].values():
            if not entry.path.startswith(prefix):
                continue
            rest = entry.path[len(prefix) :]
            if "/" in rest and not recursive:
                name = prefix + rest.split("/", 1)[0]
                items.setdefault(
                    name, {"type": "directory", "oid": _tree_oid(name), "size": 0, "path": name}
                )
                continue
            if recursive:  # every parent folder is listed too, as the Hub does
                bits = rest.split("/")[:-1]
                for i in range(len(bits)):
                    name = prefix + "/".join(bits[: i + 1])
                    items.setdefault(
                        name, {"type": "directory", "oid": _tree_oid(name), "size": 0, "path": name}
                    )
            item: dict[str, object] = {
                "type": "file",
                "oid": entry.blob_id,
                "size": entry.size,
                "path": entry.path,
            }
            if entry.lfs_sha256 is not None:
                item["lfs"] = {
                    "oid": entry.lfs_sha256,
                    "size": entry.size,
                    "pointerSize": entry.pointer_size,
                }
            items[entry.path] = item
        listing = [items[k] for k in sorted(items)]
        start = int(request.query.get("cursor", "0") or 0)
        page = listing[start : start + self.page_size]
        headers = {}
        if start + self.page_size < len(listing):
            query = dict(request.query) | {"cursor": str(start + self.page_size)}
            nxt = request.url.with_query(query)
            headers["Link"] = f'<{nxt}>; rel="next"'
        return web.json_response(page, headers=headers)

    async def _resolve(
        self, request: web.Request, repo_id: str, revision: str, path_parts: list[str]
    ) -> web.StreamResponse:
        repo = self.repos.get(repo_id)
        if repo is None:
            return _error(404, "RepoNotFound", f"Repository {repo_id} not found")
        commit = lookup(repo, revision)
        if commit is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        if repo.gated and not self._authorized(request):
            return _error(
                401,
                "GatedRepo",
                f"Access to model {repo_id} is restricted. You must have access to it and be "
                "authenticated to access it. Please log in.",
            )
        path = "/".join(path_parts)
        entry = repo.commits[commit].get(path)
        base = {"X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
        if entry is None:
            return _error(404, "EntryNotFound", f"{path} does not exist on {revision}", base)
        if entry.lfs_sha256 is not None:
            headers = base | {
                "Location": self.cdn.signed_url(entry.lfs_sha256),
                "ETag": f'"{entry.blob_id}"',
                "X-Linked-Etag": f'"{entry.lfs_sha256}"',
                "X-Linked-Size": str(entry.size),
                "Content-Type": "text/plain; charset=utf-8",
            }
            return web.Response(status=302, headers=headers, text="Found. Redirecting")
        return await _serve_small(request, entry, base | {"ETag": f'"{entry.blob_id}"'})

    def _authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.tokens


def _tree_oid(path: str) -> str:
    return hashlib.sha1(f"tree {path}".encode()).hexdigest()


def _error(
    status: int, code: str, message: str, extra: Mapping[str, str] | None = None
) -> web.Response:
    headers = dict(extra or {})
    if code:
        headers["X-Error-Code"] = code
    headers["X-Error-Message"] = message
    return web.json_response({"error": message}, status=status, headers=headers)


async def _serve_small(
    request: web.Request, entry: HubFile, headers: dict[str, str]
) -> web.StreamResponse:
    data = await asyncio.to_thread(entry.source.read_bytes)
    status, start, end = 200, 0, len(data)
    wanted = request.headers.get("Range", "")
    if wanted.startswith("bytes=") and "," not in wanted:
        first, _, last = wanted[6:].partition("-")
        if first.isascii() and first.isdigit() and int(first) < len(data):
            start = int(first)
            end = min(len(data), int(last) + 1) if last.isascii() and last.isdigit() else len(data)
            status = 206
            headers = headers | {"Content-Range": f"bytes {start}-{end - 1}/{len(data)}"}
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = end - start
    await response.prepare(request)
    if request.method == "GET":
        await response.write(data[start:end])
        await response.write_eof()
    return response


async def _serve_forever(hub: Hub) -> None:
    async with hub:
        print(f"hub at {hub.endpoint} (CDN {hub.cdn.cdn_url}): {', '.join(hub.repos)}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve DIR/<owner>/<name>/… as a local hub.")
    parser.add_argument("dir", type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cdn-throttle", help="bytes per second per CDN response, e.g. 20M")
    parser.add_argument("--token", action="append", default=[], help="a valid token")
    args = parser.parse_args()
    from downloader.settings import parse_size

    throttle = parse_size(args.cdn_throttle) if args.cdn_throttle else None
    hub = Hub(tokens=set(args.token), cdn_throttle=throttle, port=args.port)
    for owner in sorted(p for p in args.dir.iterdir() if p.is_dir()):
        for repo in sorted(p for p in owner.iterdir() if p.is_dir()):
            hub.add_repo(f"{owner.name}/{repo.name}", repo_files(repo))
    asyncio.run(_serve_forever(hub))


if __name__ == "__main__":
    main()


__all__ = ["Hub", "HubFile", "HubRepo", "repo_files"]
