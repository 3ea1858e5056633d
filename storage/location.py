"""Where the ledger lives when nobody says: ``$MODELHAUL_HOME/ledger.db``."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

LEDGER_FILENAME = "ledger.db"


def user_data_dir(env: Mapping[str, str], appname: str = "modelhaul") -> Path:
    """The platform's per-user data folder (XDG on Linux), as platformdirs would give it."""
    if sys.platform == "win32":
        base = env.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / appname
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / appname
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / appname


def modelhaul_home(env: Mapping[str, str]) -> Path:
    """``MODELHAUL_HOME`` if set, else the user data folder."""
    explicit = env.get("MODELHAUL_HOME")
    return Path(explicit).expanduser() if explicit else user_data_dir(env)


def default_ledger_path(env: Mapping[str, str] | None = None) -> Path:
    """The ledger file used when no URL is given."""
    return modelhaul_home(os.environ if env is None else env) / LEDGER_FILENAME
