"""HTTP headers a user gives (curl's ``-H``): read them, and tell the ones that may carry a
credential (kept in memory only, sent only to a file's own host) from the rest (kept with
the task, sent with every request)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from downloader.errors import SpecError

_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
_CREDENTIAL = re.compile(r"authorization|cookie|token|key|secret|password|session", re.I)
# Headers the download sets itself: a user's would break ranges, validators or framing.
_OURS = frozenset({"host", "range", "if-range", "content-length", "accept-encoding"})


def is_credential(name: str) -> bool:
    """Whether a header named ``name`` may carry a credential."""
    return bool(_CREDENTIAL.search(name))


def parse_header(text: str) -> tuple[str, str]:
    """``Name: value`` → (name, value); ``SpecError`` naming what is wrong."""
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not _NAME.match(name):
        raise SpecError(f"header {text!r:.80} is not 'Name: value'")
    if any(c in value for c in "\r\n\x00"):
        raise SpecError(f"header {name!r} has a line break or NUL in its value")
    if name.lower() in _OURS:
        raise SpecError(f"header {name!r} is modelhaul's to set, not yours")
    return name, value


def split_credentials(headers: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(credentials, the rest) of ``headers``."""
    credentials = {k: v for k, v in headers.items() if is_credential(k)}
    return credentials, {k: v for k, v in headers.items() if k not in credentials}
