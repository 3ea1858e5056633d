"""A web origin as ``serve --cors-origin`` takes it: ``scheme://host[:port]``, checked strictly
and written the way a browser writes its ``Origin`` header, so that the server can compare
the two as strings.

Standard library only: the command line checks values with it before anything else loads.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

MAX_ORIGIN = 300  # a scheme, a 253-character name and a port fit with room to spare
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", re.DOTALL)
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}")


def parse_web_origin(text: str) -> str:
    """``text`` as a browser serialises that origin (lower case, IPv6 compressed in
    brackets, no default port); a ``ValueError`` naming it and what is wrong otherwise.

    Refused: a wildcard, ``null``, schemes other than http and https, userinfo, a path
    (even ``/``), a query or fragment, a port outside 1-65535, and any host that is not a
    DNS name, a dotted-quad IPv4 address or a bracketed IPv6 address."""
    shown = repr(text[:100])
    value = text.strip()
    if not value or len(value) > MAX_ORIGIN:
        raise ValueError(f"origin {shown} must be 1-{MAX_ORIGIN} characters")
    if "*" in value:
        raise ValueError(f"origin {shown}: wildcards are not allowed; name each origin")
    if value.lower() == "null":
        raise ValueError(
            f"origin {shown}: 'null' is what sandboxed pages and local files send, "
            "so any of them could claim it; it cannot be allowed"
        )
    match = _SCHEME.fullmatch(value)
    if match is None:
        raise ValueError(f"origin {shown} is not scheme://host[:port]")
    scheme, rest = match[1].lower(), match[2]
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"origin {shown}: the scheme must be http or https")
    for mark, part in (("@", "user information"), ("/", "a path"), ("?", "a query")):
        if mark in rest:
            raise ValueError(f"origin {shown} has {part}; an origin is scheme://host[:port]")
    if "#" in rest or any(c.isspace() or ord(c) < 0x20 for c in rest):
        raise ValueError(f"origin {shown} is not scheme://host[:port]")
    host, port = _host_and_port(rest, shown)
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}:{port}"
    return f"{scheme}://{host}"


def parse_web_origins(values: Iterable[str]) -> frozenset[str]:
    """Each of ``values`` through ``parse_web_origin``."""
    return frozenset(parse_web_origin(v) for v in values)


def split_origins(text: str) -> list[str]:
    """A comma-separated list (``MODELHAUL_CORS_ORIGINS``), empty items dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _host_and_port(authority: str, shown: str) -> tuple[str, int | None]:
    if authority.startswith("["):
        literal, bracket, after = authority[1:].partition("]")
        if not bracket:
            raise ValueError(f"origin {shown}: the IPv6 address has no closing ']'")
        try:
            if "%" in literal:  # a zone (fe80::1%eth0): no browser puts one in an origin
                raise ValueError(literal)
            address = ipaddress.IPv6Address(literal)
        except ValueError:
            raise ValueError(f"origin {shown}: {literal[:60]!r} is not an IPv6 address") from None
        host = f"[{address.compressed}]"
    else:
        name, colon, port_text = authority.partition(":")
        host = _name(name, shown)
        after = f":{port_text}" if colon else ""
    if not after:
        return host, None
    if not after.startswith(":"):
        raise ValueError(f"origin {shown} is not scheme://host[:port]")
    port_text = after[1:]
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"origin {shown}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def _name(name: str, shown: str) -> str:
    lowered = name.lower()
    if not lowered:
        raise ValueError(f"origin {shown} has no host")
    labels = lowered.split(".")
    if labels[-1].isdigit():
        # What a browser reads as an IPv4 address: only the dotted quad it would send.
        try:
            return str(ipaddress.IPv4Address(lowered))
        except ValueError:
            raise ValueError(f"origin {shown}: {name[:60]!r} is not an IPv4 address") from None
    if len(lowered) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(
            f"origin {shown}: {name[:60]!r} is not a host name (letters, digits, '-' and "
            "'.' only; write an international name in its xn-- form)"
        )
    return lowered
