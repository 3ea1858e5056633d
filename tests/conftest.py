"""Shared fixtures: a real ledger file per test, nothing mocked."""

from __future__ import annotations

import os
import subprocess
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


@pytest.fixture(scope="session")
def big_files(tmp_path_factory):
    """A folder with random files shared by the slow tests: 256 MiB ``big.bin``."""
    from downloader.testing.nginx import write_random_file

    root = tmp_path_factory.mktemp("served")
    write_random_file(root / "big.bin", 256 << 20, seed=256)
    return root


@pytest.fixture(scope="session")
def nginx_server(big_files, tmp_path_factory):
    """nginx on a free port serving ``big_files`` (``/slow/`` at 20 MB/s per connection)."""
    from downloader.testing.nginx import start_nginx

    server = start_nginx(big_files, tmp_path_factory.mktemp("nginx"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def huge_file(big_files):
    """A 2 GiB file beside ``big.bin`` (16 MiB random pieces, each tagged with its index)."""
    import random

    path = big_files / "huge.bin"
    piece = bytearray(random.Random(2048).randbytes(16 << 20))
    with path.open("wb") as f:
        for i in range(128):
            piece[:8] = i.to_bytes(8, "big")
            f.write(piece)
    return path


@pytest.fixture
def tmpfs(tmp_path: Path):
    """``tmpfs("40m")``: a small real filesystem of that size (unmounted afterwards); the
    test is skipped, with the reason, only where mounting is impossible."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"disk{len(mounts)}"
        folder.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}): needs root")
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        subprocess.run(["umount", "-l", str(folder)], check=False)
