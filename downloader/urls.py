"""URLs as the HTTP client will read them: one check (``check_url``) for every URL a user
or a remote gives (specs, mirrors, peers, Hub mirrors), and the text check under it."""

from __future__ import annotations

import re

from yarl import URL

from downloader.errors import SpecError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A host as it goes on the wire (after IDNA): a DNS name, an IPv4 address or the inside of
# an IPv6 literal (with a zone). Anything else (spaces, "@", NUL) is not a host at all.
_HOST = re.compile(r"[A-Za-z0-9._:%-]+")


def text_value(value: object, what: str) -> str:
    """``value`` stripped, if it is a string that can be written as UTF-8 (a command line in
    a non-UTF-8 locale gives lone surrogates, which no ledger, URL or path can hold)."""
    if not isinstance(value, str):
        raise SpecError(f"{what} must be a string, not {type(value).__name__}")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise SpecError(f"{what} {value!r} is not valid Unicode") from None
    return value.strip()


def check_url(url: str, *, what: str = "URL") -> str:
    """``url`` if it is an absolute http(s) URL with a host; else a ``SpecError`` saying why.

    Parsed as the HTTP client (yarl) will parse it, so a URL accepted here can be fetched:
    a bad IPv6 literal, a port outside 1-65535 or a host with spaces fails now, not after
    retries."""
    text = text_value(url, what)
    if _CONTROL.search(text):
        raise SpecError(f"{what} {text!r} contains a control character")
    scheme = text.partition(":")[0] if ":" in text else ""
    if scheme.lower() not in ("http", "https"):
        raise SpecError(
            f"{what} {text!r} is not supported: only http:// and https:// URLs can be downloaded"
        )
    try:
        parsed = URL(text)
        host, port = parsed.raw_host, parsed.port
    except (ValueError, UnicodeError) as e:  # yarl: bad IPv6 literal, port, IDNA label
        raise SpecError(f"{what} {text!r} is not a valid URL: {e}") from None
    except IndexError:  # yarl 1.25 on brackets with an empty host after "@": "http://[]@/"
        raise SpecError(f"{what} {text!r} is not a valid URL: it has no host") from None
    if not host:
        raise SpecError(f"{what} {text!r} has no host")
    if not _HOST.fullmatch(host):
        raise SpecError(f"{what} {text!r} has an invalid host {host!r}")
    if port is not None and not 1 <= port <= 65535:
        raise SpecError(f"{what} {text!r} has port {port}, outside 1-65535")
    return text
