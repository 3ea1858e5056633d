"""Hostile servers for the hostile-input suite: a hub, a registry, a daemon and an origin
that each speak their protocol well enough to be believed, then attack in one named way.

    async with HostileHub(HubAttack.TRAVERSAL) as hub:      # HF_ENDPOINT=hub.endpoint
        ...
    async with HostileOrigin(OriginAttack.GZIP_RANGES) as origin:
        url = origin.url("model.gguf")

Every attack is a member of its server's enum, so a test names what it tries, and
``served`` counts the body bytes each server sent. Nothing here is safe to expose beyond
127.0.0.1: that is the point.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gzip
import hashlib
import json
from typing import Any

from aiohttp import web

VICTIM = "outside/victim"  # the tests' user file, beside the roots they hand out

# A blob name of "sha256-" + 64 characters that walks out of the store to VICTIM's folder.
_ESCAPE = "/../../../" + VICTIM
DIGEST_ESCAPE = "sha256:" + "/." * ((64 - len(_ESCAPE)) // 2) + _ESCAPE
assert len(DIGEST_ESCAPE) == 71


class _Server:
    """One aiohttp app on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self.served = 0
        self.requests: list[str] = []
        self._runner: web.AppRunner | None = None
        self.base = ""

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> _Server:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server  # aiohttp keeps the listening socket here
        assert server is not None and server.sockets
        self.base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self):  # type: ignore[no-untyped-def]
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _body(
        self, request: web.Request, data: bytes, headers: dict[str, str] | None = None
    ) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        response = web.StreamResponse(status=200, headers=headers or {})
        response.content_length = len(data)
        await response.prepare(request)
        if request.method == "GET":
            await response.write(data)
            self.served += len(data)
        await response.write_eof()
        return response

    async def _endless(self, request: web.Request, response: web.StreamResponse) -> None:
        """Send bytes until the client hangs up (or ten minutes pass)."""
        await response.prepare(request)
        piece = b"\xab" * (64 << 10)
        # The client hanging up is how this is meant to end.
        with contextlib.suppress(ConnectionError):
            for _ in range(160_000):  # 10 GiB: far past anything a bounded client reads
                await response.write(piece)
                self.served += len(piece)


# --- a Hugging Face hub ----------------------------------------------------------------------


class HubAttack(enum.StrEnum):
    """What the hub lies about (the model info of ``evil/model``)."""

    TRAVERSAL = "traversal"  # a file named ../../../x
    NESTED_TRAVERSAL = "nested_traversal"  # a/../../../x
    ABSOLUTE = "absolute"  # /abs/x
    BACKSLASH = "backslash"  # ..\..\x
    DEEP_TRAVERSAL = "deep_traversal"  # ("../" * 30) + "tmp/x"
    NUL_NAME = "nul_name"  # a\x00b.gguf
    BLOB_ID_TRAVERSAL = "blob_id_traversal"  # blobId ../../../../x (a small file)
    LFS_SHA_TRAVERSAL = "lfs_sha_traversal"  # lfs.sha256 ../../../../x
    COMMIT_TRAVERSAL = "commit_traversal"  # sha ../../x
    SIZE_NOT_NUMBER = "size_not_number"  # size "abc"
    SIZE_HUGE = "size_huge"  # size 10**18
    SIBLINGS_NOT_LIST = "siblings_not_list"  # siblings: {"a": 1}
    INDEX_TOO_DEEP = "index_too_deep"  # a shard index of 100,000 nested lists
    INDEX_ENDLESS = "index_endless"  # a shard index that never ends
    # An LFS file it publishes small, served as a 206 of a file of 10**18 bytes whose body
    # never ends: what a client's first range request (in place of a probe) meets.
    LFS_RANGE_LIES = "lfs_range_lies"


class HostileHub(_Server):
    """A hub serving one repo, ``evil/model``, whose model info carries ``attack``. Every
    file it lists is served (the same bytes), so a client that believes it writes them."""

    REPO = "evil/model"
    COMMIT = "c0ffee" + "0" * 34
    CONTENT = b"written by a hostile hub\n"

    def __init__(self, attack: HubAttack) -> None:
        super().__init__()
        self.attack = attack

    @property
    def endpoint(self) -> str:
        return self.base

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._dispatch)

    def _name(self) -> str:
        return {
            HubAttack.TRAVERSAL: "../../../x",
            HubAttack.NESTED_TRAVERSAL: "a/../../../x",
            HubAttack.ABSOLUTE: "/abs/x",
            HubAttack.BACKSLASH: "..\\..\\x",
            HubAttack.DEEP_TRAVERSAL: "../" * 30 + "tmp/x",
            HubAttack.NUL_NAME: "a\x00b.gguf",
        }.get(self.attack, "config.json")

    def info(self) -> dict[str, Any]:
        """The model info (``/api/models/evil/model``) with the attack in it."""
        a = self.attack
        data = self.CONTENT
        blob_id = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        sibling: dict[str, Any] = {"rfilename": self._name(), "size": len(data), "blobId": blob_id}
        if a is HubAttack.BLOB_ID_TRAVERSAL:
            sibling["blobId"] = "../../../../x"
        if a is HubAttack.LFS_SHA_TRAVERSAL:
            sibling["lfs"] = {"size": len(data), "sha256": "../../../../x", "pointerSize": 130}
        if a is HubAttack.SIZE_NOT_NUMBER:
            sibling["size"] = "abc"
        if a is HubAttack.SIZE_HUGE:
            sibling["size"] = 10**18
        if a is HubAttack.LFS_RANGE_LIES:
            sibling["rfilename"] = "model.bin"
            sibling["lfs"] = {
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "pointerSize": 130,
            }
        siblings: Any = [sibling]
        if a in (HubAttack.INDEX_TOO_DEEP, HubAttack.INDEX_ENDLESS):
            index = "model.safetensors.index.json"
            siblings = [{"rfilename": index, "size": 10, "blobId": blob_id}]
        if a is HubAttack.SIBLINGS_NOT_LIST:
            siblings = {"a": 1}
        return {
            "id": self.REPO,
            "modelId": self.REPO,
            "sha": "../../x" if a is HubAttack.COMMIT_TRAVERSAL else self.COMMIT,
            "private": False,
            "gated": False,
            "disabled": False,
            "tags": [],
            "siblings": siblings,
        }

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.raw_path}")
        if request.path.startswith(f"/api/models/{self.REPO}"):
            return web.json_response(self.info())
        if f"{self.REPO}/resolve/" not in request.path:
            return web.json_response({"error": "no route"}, status=404)
        headers = {"X-Repo-Commit": self.COMMIT, "ETag": '"x"'}
        if self.attack is HubAttack.INDEX_TOO_DEEP:
            return await self._body(request, b"[" * 100_000 + b"]" * 100_000, headers)
        if self.attack is HubAttack.INDEX_ENDLESS:
            response = web.StreamResponse(headers=headers)
            await self._endless(request, response)
            return response
        if self.attack is HubAttack.LFS_RANGE_LIES:
            lie = {**headers, "Content-Range": f"bytes 0-{len(self.CONTENT) - 1}/{10**18}"}
            response = web.StreamResponse(status=206, headers=lie)
            await self._endless(request, response)
            return response
        return await self._body(request, self.CONTENT, headers)


# --- an Ollama registry ------------------------------------------------------------------------


class RegistryAttack(enum.StrEnum):
    """What the registry's manifest of ``library/evil:latest`` lies about."""

    DIGEST_ESCAPE = "digest_escape"  # sha256: + 64 characters of /./ and ../ out of the store
    DIGEST_UPPERCASE = "digest_uppercase"  # sha256:ABC… (not the lowercase hex ollama writes)
    SIZE_STRING = "size_string"  # "size": "12"
    SIZE_NEGATIVE = "size_negative"  # "size": -1
    SIZE_HUGE = "size_huge"  # "size": 10**18
    NOT_JSON = "not_json"  # an HTML page
    JSON_LIST = "json_list"  # [1, 2, 3]
    LAYERS_NOT_LIST = "layers_not_list"  # "layers": {"a": 1}
    ENDLESS = "endless"  # a manifest that never ends


class HostileRegistry(_Server):
    """An Ollama registry whose one model, ``evil``, carries ``attack``; every blob URL is
    answered with bytes (that match no digest)."""

    BLOB = b"bytes from a hostile registry\n"

    def __init__(self, attack: RegistryAttack) -> None:
        super().__init__()
        self.attack = attack

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v2/{tail:.*}", self._dispatch)

    def manifest(self) -> bytes:
        a = self.attack
        digest = "sha256:" + hashlib.sha256(self.BLOB).hexdigest()
        layer: dict[str, Any] = {
            "mediaType": "application/vnd.ollama.image.model",
            "digest": digest,
            "size": len(self.BLOB),
        }
        if a is RegistryAttack.DIGEST_ESCAPE:
            layer["digest"] = DIGEST_ESCAPE
        if a is RegistryAttack.DIGEST_UPPERCASE:
            layer["digest"] = digest.upper().replace("SHA256", "sha256")
        layer["size"] = {
            RegistryAttack.SIZE_STRING: str(len(self.BLOB)),
            RegistryAttack.SIZE_NEGATIVE: -1,
            RegistryAttack.SIZE_HUGE: 10**18,
        }.get(a, layer["size"])
        config = {"mediaType": "application/vnd.docker.container.image.v1+json"} | {
            "digest": digest,
            "size": len(self.BLOB),
        }
        body: Any = {"schemaVersion": 2, "layers": [layer], "config": config}
        if a is RegistryAttack.LAYERS_NOT_LIST:
            body["layers"] = {"a": 1}
        if a is RegistryAttack.JSON_LIST:
            body = [1, 2, 3]
        if a is RegistryAttack.NOT_JSON:
            return b"<html><body>Welcome to nginx!</body></html>"
        return json.dumps(body).encode()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if "/manifests/" in request.path:
            if self.attack is RegistryAttack.ENDLESS:
                response = web.StreamResponse()
                await self._endless(request, response)
                return response
            return await self._body(request, self.manifest())
        return await self._body(request, self.BLOB)


# --- an Ollama daemon ------------------------------------------------------------------------


class DaemonAttack(enum.StrEnum):
    """What ``POST /api/pull`` streams."""

    TOTAL_NOT_NUMBER = "total_not_number"  # "total": "abc"
    NOT_JSON_LINE = "not_json_line"  # a line of HTML
    JSON_LIST = "json_list"  # [1, 2]
    ENDLESS_LINE = "endless_line"  # one line that never ends
    HUGE_ERROR = "huge_error"  # HTTP 500 with an endless body
    TERMINAL_ESCAPES = "terminal_escapes"  # an error that would retitle and clear a terminal


class HostileDaemon(_Server):
    """An ``ollama serve`` that answers ``/api/version`` and then attacks in ``/api/pull``."""

    def __init__(self, attack: DaemonAttack) -> None:
        super().__init__()
        self.attack = attack

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/version", self._version)
        app.router.add_post("/api/pull", self._pull)

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "0.12.0"})

    async def _pull(self, request: web.Request) -> web.StreamResponse:
        a = self.attack
        if a is DaemonAttack.HUGE_ERROR:
            response = web.StreamResponse(status=500)
            await self._endless(request, response)
            return response
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        await response.write(b'{"status":"pulling manifest"}\n')
        if a is DaemonAttack.ENDLESS_LINE:
            await self._endless(request, response)
            return response
        line = {
            DaemonAttack.TOTAL_NOT_NUMBER: b'{"status":"pulling 0123456789ab","digest":'
            b'"sha256:0123456789ab","total":"abc","completed":1}\n',
            DaemonAttack.NOT_JSON_LINE: b"<html>502 Bad Gateway</html>\n",
            DaemonAttack.JSON_LIST: b"[1, 2]\n",
            DaemonAttack.TERMINAL_ESCAPES: b'{"error":"\\u001b]0;pwned\\u0007\\u001b[2Jboom"}\n',
        }[a]
        await response.write(line)
        await response.write(b'{"status":"success"}\n')
        await response.write_eof()
        return response


# --- a plain origin --------------------------------------------------------------------------


class OriginAttack(enum.StrEnum):
    """How ``/files/<name>`` answers."""

    SIZE_HUGE = "size_huge"  # Content-Range: bytes 0-0/1000000000000000000
    ENDLESS_PROBE = "endless_probe"  # a 206 to bytes=0-0 that never ends
    ENDLESS_RANGES = "endless_ranges"  # every range body runs on past its end
    GZIP_RANGES = "gzip_ranges"  # range bodies gzip-compressed, Content-Encoding: gzip
    REDIRECT_FILE = "redirect_file"  # 302 to file:///etc/passwd
    REDIRECT_BAD_PORT = "redirect_bad_port"  # 302 to http://127.0.0.1:99999/x
    RETRY_AFTER_HUGE = "retry_after_huge"  # 503, Retry-After: 99999999999999999999
    RETRY_AFTER_YEAR_9999 = "retry_after_year_9999"  # 503, Retry-After in the year 9999
    HTML_PAGE = "html_page"  # a captive portal's HTML page, for any name
    HONEST = "honest"  # no attack: the file as it is (for the other half of a test)


class HostileOrigin(_Server):
    """Serves ``files`` (name → bytes) with correct ranges, except for ``attack``."""

    HTML = b"<!doctype html><html><head><title>Sign in to the Wi-Fi</title></head></html>\n"

    def __init__(self, attack: OriginAttack, files: dict[str, bytes] | None = None) -> None:
        super().__init__()
        self.attack = attack
        self.files = dict(files or {})

    def url(self, name: str) -> str:
        return f"{self.base}/files/{name}"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/files/{name}", self._serve)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        a = self.attack
        self.requests.append(f"GET {request.path} {request.headers.get('Range', '')}")
        if a is OriginAttack.REDIRECT_FILE:
            return web.Response(status=302, headers={"Location": "file:///etc/passwd"})
        if a is OriginAttack.REDIRECT_BAD_PORT:
            return web.Response(status=302, headers={"Location": "http://127.0.0.1:99999/x"})
        if a is OriginAttack.RETRY_AFTER_HUGE:
            return web.Response(status=503, headers={"Retry-After": "99999999999999999999"})
        if a is OriginAttack.RETRY_AFTER_YEAR_9999:
            return web.Response(
                status=503, headers={"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}
            )
        data = self.HTML if a is OriginAttack.HTML_PAGE else self.files[request.match_info["name"]]
        start, end = _range(request.headers.get("Range"), len(data))
        headers = {"ETag": '"v1"', "Accept-Ranges": "bytes"}
        total = 10**18 if a is OriginAttack.SIZE_HUGE else len(data)
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{total}"
        response = web.StreamResponse(status=206, headers=headers)
        body = data[start:end]
        if a is OriginAttack.ENDLESS_PROBE and end - start == 1:
            await self._endless(request, response)
            return response
        if a is OriginAttack.ENDLESS_RANGES and end - start > 1:
            await response.prepare(request)
            await response.write(body)
            self.served += len(body)
            await self._endless(request, response)
            return response
        if a is OriginAttack.GZIP_RANGES:
            body = await asyncio.to_thread(gzip.compress, body)
            response.headers["Content-Encoding"] = "gzip"
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body)
        self.served += len(body)
        await response.write_eof()
        return response


def _range(value: str | None, size: int) -> tuple[int, int]:
    """``bytes=a-b`` → (a, b + 1), clipped to ``size``; the whole file otherwise."""
    if value and value.startswith("bytes="):
        first, _, last = value[6:].partition("-")
        if first.isdigit():
            start = int(first)
            end = min(size, int(last) + 1) if last.isdigit() else size
            if start < end:
                return start, end
    return 0, size
