"""Shared fixtures: a real ledger file per test, nothing mocked."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from storage import Lease, Ledger, open_ledger

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
async def ledger(tmp_path: Path) -> Ledger:
    led = await open_ledger(tmp_path / "ledger.db")
    yield led
    await led.close()


@pytest.fixture
def lease() -> Lease:
    return Lease(host="test-host", pid=os.getpid(), started=1.0)


def python_env(**extra: str) -> dict[str, str]:
    """Environment for child Python processes that import this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


PYTHON = sys.executable
