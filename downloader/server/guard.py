"""Keeping other web sites out: which requests a browser could have sent on another site's
behalf, refused before any handler runs.

A page on ``https://evil.example`` can make the user's browser send requests to
``http://127.0.0.1:8000`` — forms and ``text/plain`` bodies without a CORS preflight, and,
through DNS rebinding (its own name answering ``127.0.0.1``), even requests whose answers
it can read. So:

- the ``Host`` header must name this machine's loopback (``localhost``, ``*.localhost``,
  ``127.x.y.z``, ``[::1]``, any port) or a host the server was configured to listen on: a
  rebinding page's requests carry the attacker's name;
- an ``Origin`` other than the server's own (scheme, host and port the request was sent to)
  or, written exactly as a browser writes it, one of ``origins`` (``serve --cors-origin``)
  is refused, ``null`` included; so is ``Sec-Fetch-Site: cross-site``
  or ``same-site`` (another site's subdomain);
- a body must be ``application/json``, which no browser sends cross-site without asking
  (a preflight we never answer); a browser form's media type is refused even without a body.

The page and its static files answer to the ``Host`` check only: following a link to the
page from elsewhere is fine, and they hold nothing to steal.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from aiohttp import hdrs, web

from downloader.server.errors import RequestError
from downloader.weborigin import parse_web_origins

_LOOPBACK_NAMES = ("localhost",)
_WILDCARDS = frozenset({"0.0.0.0", "::"})
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# What a page on another site can send without a preflight (the Fetch standard's
# CORS-safelisted request media types).
_FORM_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})
_SAME_SITE_OK = frozenset({"same-origin", "none"})  # "none": typed, bookmarked, not a page
_HOST = re.compile(  # RFC 9110's Host: an IPv6 literal in brackets or a name, then a port
    r"(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<name>[^\[\]:/@\s]+))(?::(?P<port>\d{0,5}))?"
)
_ORIGIN = re.compile(r"(?P<scheme>https?)://(?P<authority>[^/?#\s]+)", re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]  # scheme, host, port: how two origins are compared


def host_name(value: str) -> str:
    """``value`` as hosts are compared: lower case, no brackets, no trailing dot, and an IP
    address in its one standard form (``[0:0::1]`` and ``[::1]`` are one host)."""
    name = value.strip().strip("[]").rstrip(".").lower()
    ip = _ip(name)
    return str(ip) if ip is not None else name


def parse_origin(value: str) -> Origin | None:
    """``scheme://host[:port]`` as a comparable triple; None if it is not one (``null``)."""
    match = _ORIGIN.fullmatch(value.strip())
    if match is None:
        return None
    scheme = match["scheme"].lower()
    split = _split_host(match["authority"])
    if split is None:
        return None
    host, port = split
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def _split_host(value: str) -> tuple[str, int | None] | None:
    match = _HOST.fullmatch(value)
    if match is None:
        return None
    port = int(match["port"]) if match["port"] else None
    if port is not None and port > 65535:
        return None
    return host_name(match["ip6"] or match["name"]), port


def is_loopback_name(host: str) -> bool:
    """``localhost``, a name under ``.localhost`` (RFC 6761: always loopback), or a
    loopback address."""
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    ip = _ip(host)
    return ip is not None and ip.is_loopback


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True)
class SitePolicy:
    """Which hosts and origins the server answers, besides loopback and itself.

    ``hosts``: the names the server was told to listen on (``serve --host``); a wildcard
    bind (``0.0.0.0``, ``::``) also admits any IP address, which no rebinding can fake (it
    needs a name). ``origins``: other sites allowed to call the API (``--cors-origin``),
    as ``scheme://host[:port]``; a ``ValueError`` names one that is not an origin
    (``downloader.weborigin``).
    """

    hosts: frozenset[str] = frozenset()
    origins: frozenset[str] = frozenset()
    _hosts: frozenset[str] = field(init=False, repr=False)
    _origins: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hosts", frozenset(host_name(h) for h in self.hosts))
        object.__setattr__(self, "_origins", parse_web_origins(self.origins))

    def listed_origin(self, request: web.Request) -> str | None:
        """The request's ``Origin`` if it is one of ``origins``, byte for byte as a browser
        writes it (so it can be echoed back); None otherwise. Look-alikes
        (``http://127.0.0.1:80.evil.example``, another port or scheme, upper case) are no
        match."""
        raw = request.headers.get(hdrs.ORIGIN)
        return raw if raw is not None and raw in self._origins else None

    def check(self, request: web.Request) -> None:
        """Raise ``RequestError`` (400, 403 or 415) unless ``request`` may be answered."""
        host, port = self._host(request)
        if request.method in ("GET", "HEAD") and _is_page(request.path):
            return
        self._same_site(request, (request.scheme, host, port))
        _json_body(request)

    def _host(self, request: web.Request) -> tuple[str, int]:
        raw = request.headers.get(hdrs.HOST)
        if raw is None:
            raise RequestError(400, "MISSING_HOST", "the request has no Host header")
        split = _split_host(raw)
        if split is None:
            raise RequestError(400, "INVALID_HOST", f"Host {raw[:100]!r} is not a host[:port]")
        host, port = split
        if not self._host_allowed(host):
            raise RequestError(
                403,
                "HOST_NOT_ALLOWED",
                f"this server does not answer to Host {host[:100]!r}: use localhost or "
                "127.0.0.1, or the host given to serve --host",
            )
        return host, port if port is not None else _DEFAULT_PORTS.get(request.scheme, 80)

    def _host_allowed(self, host: str) -> bool:
        if is_loopback_name(host) or host in self._hosts:
            return True
        return bool(self._hosts & _WILDCARDS) and _ip(host) is not None

    def _same_site(self, request: web.Request, own: Origin) -> None:
        raw = request.headers.get(hdrs.ORIGIN)
        if raw is not None:
            if self.listed_origin(request) is not None:
                return  # an allowed other site: its requests are cross-site by definition
            if parse_origin(raw) != own:
                raise RequestError(
                    403, "CROSS_ORIGIN", f"requests from {raw[:100]!r} are not allowed"
                )
        fetch_site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
        if fetch_site and fetch_site not in _SAME_SITE_OK:
            raise RequestError(
                403,
                "CROSS_ORIGIN",
                f"requests from other sites are not allowed (Sec-Fetch-Site: {fetch_site[:40]})",
            )


def _is_page(path: str) -> bool:
    return path == "/" or path.startswith("/static/")


def _json_body(request: web.Request) -> None:
    if request.method not in _UNSAFE_METHODS:
        return
    declared = request.headers.get(hdrs.CONTENT_TYPE)
    media = declared.split(";", 1)[0].strip().lower() if declared is not None else None
    if media == "application/json":
        return
    if request.body_exists or media in _FORM_TYPES:
        shown = f"Content-Type {declared[:100]!r}" if declared is not None else "no Content-Type"
        raise RequestError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"request bodies must be JSON (Content-Type: application/json), not {shown}",
        )
