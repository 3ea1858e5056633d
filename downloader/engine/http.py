"""HTTP for the engine: the shared session, and one remote file reached through redirects.

Redirects are followed by hand so that the final (often signed, expiring) URL can be reused
for every range request, re-resolved from the original URL when its host answers 403/410, and
so that credentials only ever go to the original URL's host.
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urljoin, urlsplit

import aiohttp
from yarl import URL

from downloader.engine.config import EngineConfig
from downloader.engine.network import ProxyRoutes
from downloader.engine.retry import RetryPolicy, TransientError, parse_retry_after
from downloader.errors import HTTPStatusError, TransferError
from downloader.headers import is_credential

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$", re.IGNORECASE)


class EncodedBodyError(TransferError):
    """The server sent the bytes with a ``Content-Encoding`` (gzip, br, …) although we asked
    for ``identity``: the encoded bytes are not the file's bytes, and a range of an encoded
    stream cannot be decoded on its own. Nothing of such a body is written."""

    def __init__(self, url: str, encoding: str) -> None:
        self.encoding = encoding
        super().__init__(
            f"{url} was sent with Content-Encoding {encoding!r} although modelhaul asked for "
            "the bytes as they are ('identity'); encoded bytes are not the file, so nothing of "
            "them was written",
            url=url,
        )


class ExpiredURLError(TransientError):
    """The redirect target (a signed URL) refused us; the original URL must be asked again."""


def user_agent() -> str:
    try:
        return f"modelhaul/{version('modelhaul')}"
    except PackageNotFoundError:  # running from a checkout without install
        return "modelhaul"


def request_timeout(config: EngineConfig) -> aiohttp.ClientTimeout:
    """No total or pool-wait timeout (a download may take hours and may queue for a
    connection); ``sock_read`` is the stall timeout: no byte for that long and the request
    is abandoned."""
    return aiohttp.ClientTimeout(
        total=None,
        connect=None,
        sock_connect=config.connect_timeout,
        sock_read=config.stall_timeout,
    )


def open_session(config: EngineConfig) -> aiohttp.ClientSession:
    """The one session all downloads of a process share: global and per-host connection
    limits, connect and stall timeouts, the bytes as they are (``identity``), and the way
    out (``config.network``: each request's proxy, the CAs trusted)."""
    connector = aiohttp.TCPConnector(
        limit=config.max_connections,
        limit_per_host=config.max_per_host,
        ttl_dns_cache=300,
        ssl=config.network.ssl(),
        local_addr=(config.network.local_address, 0) if config.network.local_address else None,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=request_timeout(config),
        auto_decompress=False,
        read_bufsize=config.read_buffer,
        headers={"User-Agent": user_agent(), "Accept-Encoding": "identity"},
        request_class=_routed(config.network.proxies),
    )


def set_per_host_limit(session: aiohttp.ClientSession, limit: int) -> None:
    """Change how many connections ``session`` opens toward one host at once (a fleet's
    share of ``max_per_host`` moves as workers come and go). aiohttp has no public setter:
    its connector reads this attribute on every new connection, so connections above a
    lowered cap end with their requests (range requests close theirs) and a raised cap is
    used as soon as any request ends. Not for 0: aiohttp would then stop counting."""
    if limit < 1:
        raise ValueError(f"a per-host connection limit is at least 1, not {limit}")
    connector = session.connector
    if isinstance(connector, aiohttp.TCPConnector) and hasattr(connector, "_limit_per_host"):
        connector._limit_per_host = limit


class ProxyCredentialsError(TransferError):
    """A request to a plain-HTTP origin carries credentials and would go through a proxy,
    which reads plain HTTP: not sent."""


def _routed(routes: ProxyRoutes) -> type[aiohttp.ClientRequest]:
    """aiohttp's request, routed through ``routes``' proxy for its URL: the one place every
    request of the session (range requests, probes, Hub and Ollama metadata) is routed."""

    class RoutedRequest(aiohttp.ClientRequest):
        def update_proxy(
            self,
            proxy: URL | None,
            proxy_auth: aiohttp.BasicAuth | None,
            proxy_headers: Mapping[str, str] | None,
        ) -> None:
            chosen = routes.for_url(self.url.scheme, self.url.host or "") if proxy is None else None
            if chosen is not None and chosen.refused:
                raise TransferError(f"{chosen.refused}; {self.url.host} not reached")
            if chosen is not None:
                if self.url.scheme == "http" and any(is_credential(k) for k in self.headers):
                    raise ProxyCredentialsError(
                        f"{self.url.with_query(None)} would get its credentials through the "
                        f"proxy {chosen.url} in clear (plain HTTP); not sent. Use https, or "
                        f"put {self.url.host} in NO_PROXY",
                        url=str(self.url),
                    )
                proxy = URL(chosen.url)
                if chosen.user is not None:
                    proxy_auth = aiohttp.BasicAuth(chosen.user, chosen.password or "")
            super().update_proxy(proxy, proxy_auth, proxy_headers)  # type: ignore[arg-type]

    return RoutedRequest


@dataclass(frozen=True, slots=True)
class ContentRange:
    """A parsed ``Content-Range``; ``start``/``end`` are None for ``bytes */total``."""

    start: int | None
    end: int | None
    total: int | None


def parse_content_range(value: str | None) -> ContentRange | None:
    """``bytes 0-99/1234`` → ContentRange(0, 99, 1234); None when absent or malformed."""
    if not value:
        return None
    m = _CONTENT_RANGE.match(value)
    if not m:
        return None
    start, end, total = m.groups()
    return ContentRange(
        int(start) if start is not None else None,
        int(end) if end is not None else None,
        int(total) if total != "*" else None,
    )


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class Resource:
    """One remote file as reached from its original URL."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        auth_headers: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> None:
        self.session = session
        self.url = url
        self._auth = dict(auth_headers or {})
        self._headers = dict(headers or {})  # sent everywhere (no credentials among them)
        self._retry = retry or RetryPolicy()  # which statuses are worth another attempt
        self._timeout = timeout  # this file's own stall/connect timeouts (else the session's)
        self._resolved: str | None = None

    @property
    def final_url(self) -> str:
        """Where range requests go now (the last redirect target, or the URL itself)."""
        return self._resolved or self.url

    @asynccontextmanager
    async def get(
        self, headers: Mapping[str, str], *, read_buffer: int | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET with ``headers`` (its body read through ``read_buffer`` bytes, else the
        session's); yields a 2xx response. Raises ``HTTPStatusError`` for statuses no retry
        can fix, ``TransientError`` for those it may."""
        try:
            response = await self._open(headers, read_buffer)
        except ExpiredURLError:
            # Our cached signed URL expired: ask the original URL for a fresh one, once.
            self._resolved = None
            response = await self._open(headers, read_buffer)
        try:
            yield response
        finally:
            response.close()

    async def _open(
        self, headers: Mapping[str, str], read_buffer: int | None = None
    ) -> aiohttp.ClientResponse:
        url = self.final_url
        options = {} if read_buffer is None else {"read_bufsize": read_buffer}
        for _ in range(MAX_REDIRECTS + 1):
            sent = {**self._headers, **headers}
            if _origin(url) == _origin(self.url):
                sent.update(self._auth)  # credentials never leave the original host
            try:
                response = await self.session.get(
                    url, headers=sent, allow_redirects=False, timeout=self._timeout, **options
                )
            except aiohttp.InvalidURL as e:
                raise TransferError(f"{url} is not a URL that can be fetched: {e}", url=url) from e
            except aiohttp.ClientConnectorDNSError as e:
                if e.os_error.errno == socket.EAI_NONAME:  # no such name (not a DNS outage)
                    host = urlsplit(url).hostname
                    raise TransferError(
                        f"the host {host} does not exist (DNS): {url}", url=url
                    ) from e
                raise TransientError(f"{type(e).__name__}: {e}", unreachable=True) from e
            except aiohttp.ClientConnectorCertificateError as e:
                raise TransferError(_untrusted(url, e), url=url) from e
            except aiohttp.ClientSSLError as e:
                host = urlsplit(url).hostname
                raise TransferError(
                    f"TLS with {host} failed: {e.os_error or e} ({url})", url=url
                ) from e
            except aiohttp.ClientHttpProxyError as e:
                raise TransferError(_proxy_refused(url, e.status, e.message), url=url) from e
            except aiohttp.ClientConnectorError as e:
                raise TransientError(f"{type(e).__name__}: {e}", unreachable=True) from e
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                raise TransientError(f"{type(e).__name__}: {e or 'connection failed'}") from e
            status = response.status
            if status in REDIRECTS and "Location" in response.headers:
                response.release()
                url = _redirect_target(url, response.headers["Location"])
                continue
            if status < 300:
                encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    response.close()
                    raise EncodedBodyError(url, encoding)
                if url != self.url:
                    self._resolved = url
                return response
            detail = (response.headers.get("X-Error-Message") or "").strip()[:500]
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            reason = response.reason or ""
            response.close()
            if status == 407:  # from a proxy: the origin was not even asked
                raise TransferError(_proxy_refused(url, status, reason), url=url)
            if status in (403, 410) and _origin(url) != _origin(self.url):
                raise ExpiredURLError(f"HTTP {status} from redirect target {_origin(url)[1]}")
            if self._retry.is_retry(status):
                raise TransientError(f"HTTP {status} {reason}".strip(), retry_after=retry_after)
            raise HTTPStatusError(self.url, status, reason, detail)
        raise TransferError(f"more than {MAX_REDIRECTS} redirects for {self.url}", url=self.url)


def _proxy_refused(url: str, status: int, reason: str) -> str:
    hint = " (proxy credentials go in its URL: http://user:pass@host:port)" if status == 407 else ""
    return f"the proxy refused to reach {urlsplit(url).hostname}: HTTP {status} {reason}{hint}"


def _untrusted(url: str, error: aiohttp.ClientConnectorCertificateError) -> str:
    """One line: which host's certificate, why it is not trusted, and what would trust it."""
    host = urlsplit(url).hostname
    why = getattr(error.certificate_error, "verify_message", None) or str(error.certificate_error)
    return (
        f"the certificate of {host} is not trusted: {why} ({url}); to trust a private CA, "
        "give its bundle with --ca-certificate FILE or REQUESTS_CA_BUNDLE"
    )


def _redirect_target(url: str, location: str) -> str:
    """Where a redirect leads; a ``TransferError`` at once for a target no retry can reach
    (another scheme such as ``file://``, a port out of range, no host)."""
    target = urljoin(url, location)
    try:
        parts = urlsplit(target)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as e:
        raise TransferError(f"{url} redirects to {location!r:.200}: {e}", url=url) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise TransferError(
            f"{url} redirects to {target!r:.200}, which is not an http(s) URL; not followed",
            url=url,
        )
    return target
