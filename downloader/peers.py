"""Peers: other modelhaul servers (``modelhaul serve``) on the network that may hold a file
by its SHA-256 (``GET /api/v1/blobs/sha256/{hex}``). A peer is named by its base URL; a
token it wants rides in the URL's user part (``http://TOKEN@host:8000``) and is sent only
to that peer, as ``Authorization: Bearer``. Peers are untrusted: what they serve is
checked by digest like any mirror's bytes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from downloader.errors import SpecError
from downloader.urls import check_url

MAX_PEERS = 16
BLOB_ROUTE = "/api/v1/blobs/sha256/"
_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Peer:
    """One peer: its base URL (no credentials in it) and the token it wants, if any."""

    base: str
    token: str | None = None

    def blob_url(self, sha256: str) -> str:
        """Where the peer serves the file whose SHA-256 is ``sha256`` (64 lowercase hex)."""
        if not _HEX.fullmatch(sha256):
            raise SpecError(f"not a SHA-256 (64 lowercase hex digits): {sha256!r:.80}")
        return f"{self.base}{BLOB_ROUTE}{sha256}"

    @property
    def auth_headers(self) -> dict[str, str]:
        """The headers that carry its token (none without one)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def spelled(self) -> str:
        """The peer as it is written in options and the ledger (token included)."""
        if not self.token:
            return self.base
        scheme, _, rest = self.base.partition("://")
        # Quoted: a token with "/", ":", "@" or "%" must come back as itself, not as a host.
        return f"{scheme}://{quote(self.token, safe='')}@{rest}"


def parse_peer(text: str) -> Peer:
    """A peer from its URL (``http(s)://[TOKEN@]host[:port][/prefix]``); ``SpecError``
    naming what is wrong."""
    url = check_url(text, what="peer URL")
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise SpecError(f"peer URL {text!r:.120} must not have a query or fragment")
    token = None
    if parts.username is not None or parts.password is not None:
        # "TOKEN@host" or ":TOKEN@host": the token is whichever part is given.
        token = unquote(parts.password or parts.username or "") or None
        if token is not None and not re.fullmatch(r"[\x21-\x7e]{1,512}", token):
            raise SpecError("peer URL's token must be 1-512 printable ASCII characters")
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    base = urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))
    return Peer(base, token)


def parse_peers(values: list[str] | tuple[str, ...] | str) -> tuple[Peer, ...]:
    """Peers from a list of URLs or a comma-separated string (``MODELHAUL_PEERS``):
    duplicates dropped, at most ``MAX_PEERS``."""
    if isinstance(values, str):
        items = [i.strip() for i in values.split(",") if i.strip()]
    elif isinstance(values, (list, tuple)) and all(isinstance(v, str) for v in values):
        items = list(values)
    else:
        raise SpecError(f"peers must be a list of URLs, not {values!r:.80}")
    if len(items) > MAX_PEERS:
        raise SpecError(f"at most {MAX_PEERS} peers, not {len(items)}")
    peers = {p.base: p for p in (parse_peer(i) for i in items)}
    return tuple(peers.values())
