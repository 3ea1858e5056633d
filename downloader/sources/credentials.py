"""Credentials for a host, from where curl, wget and requests users keep them: ``~/.netrc``
(or the file ``NETRC`` names), one entry per host. They are read when needed and kept in
memory: never written to the ledger."""

from __future__ import annotations

import base64
import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit


def netrc_auth(url: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``Authorization`` header ``~/.netrc`` gives for ``url``'s host (Basic, as curl
    sends it), or nothing. A missing or unreadable file is nothing too. Blocking."""
    env = os.environ if env is None else env
    path = Path(env.get("NETRC") or Path.home() / ".netrc").expanduser()
    host = urlsplit(url).hostname
    if not host or not path.is_file():
        return {}
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except (netrc.NetrcParseError, OSError, UnicodeDecodeError):
        return {}
    if entry is None:
        return {}
    login, _, password = entry
    if not login and not password:
        return {}
    basic = base64.b64encode(f"{login or ''}:{password or ''}".encode()).decode()
    return {"Authorization": f"Basic {basic}"}
