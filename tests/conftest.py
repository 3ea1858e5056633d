"""Shared fixtures: a real ledger file per test, nothing mocked."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from storage import Lease, Ledger, open_ledger

REPO = Path(__file__).resolve().parent.parent


# The backends a ledger test can run on: ``@on_both_backends`` runs it on each (the
# ``ledger`` fixture is SQLite unless parametrized so).
BACKENDS = ("sqlite", "postgresql")
on_both_backends = pytest.mark.parametrize("ledger", BACKENDS, indirect=True)


@pytest.fixture
async def ledger(request, tmp_path: Path) -> Ledger:
    """An open ledger: a SQLite file in ``tmp_path``, or (parametrized ``"postgresql"``) a
    fresh database on the session's PostgreSQL server."""
    if getattr(request, "param", "sqlite") == "postgresql":
        target = request.getfixturevalue("pg_url")
    else:
        target = tmp_path / "ledger.db"
    led = await open_ledger(target)
    yield led
    await led.close()


@pytest.fixture(scope="session")
def pg_server():
    """One real PostgreSQL server for the whole session (``tests/pgkit.py``), stopped at the
    end; the tests that need it skip where Debian's ``postgresql`` is not installed."""
    from pgkit import start_server

    # The real folder (a symlink on PATH may point there): psql and postgres sit beside it.
    bindir = Path(system_program("pg_ctl")).resolve().parent
    system_program("initdb")
    server = start_server(bindir)
    yield server
    server.destroy()


@pytest.fixture
def pg_database(pg_server) -> str:
    """The name of a fresh database migrated to head, dropped after the test."""
    name = pg_server.new_database()
    yield name
    pg_server.drop_database(name)


@pytest.fixture
def pg_url(pg_server, pg_database: str) -> str:
    """The ``postgresql+asyncpg://`` URL of a fresh migrated database (``pg_database``); a
    child process gets it as ``MODELHAUL_LEDGER`` through ``pg_server.child_env(name)``."""
    return pg_server.url(pg_database)


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

# Tests press Ctrl-C in the CLI (SIGINT). A run of pytest started with SIGINT ignored (a
# background job of a script) would hand that on to every child, and modelhaul, as Unix
# programs do, leaves an ignored SIGINT ignored: the children get Python's own handler.
# A blocked SIGINT is handed on too, through fork and exec (CI's runner starts us so: the
# signal then waits, undelivered, and a get ran to its end): the children get it unblocked.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

# The programs some tests drive, each with the Debian package that has it (.ci/run installs
# them all). Anything else a test needs comes with pip.
SYSTEM_PACKAGES = {
    "nginx": "nginx-light",
    "chromium": "chromium",
    "tmux": "tmux",
    "setpriv": "util-linux",
    "mount": "mount",
    "tinyproxy": "tinyproxy",
    "initdb": "postgresql",
    "pg_ctl": "postgresql",
    "aria2c": "aria2",
    "curl": "curl",
    "time": "time",
    "ip": "iproute2",
    "tc": "iproute2",
}
# Under this variable (CI sets it) a missing program fails its tests instead of skipping them.
REQUIRE_SYSTEM = "MODELHAUL_REQUIRE_SYSTEM"


def _system_dirs() -> list[str]:
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1,
        reverse=True,
    )
    return ["/usr/sbin", "/sbin", *map(str, versions)]


def system_program(name: str, package: str | None = None) -> str:
    """The path of a system program a test needs. Where it is not installed the test is
    skipped with a one-line reason naming the Debian package, so that the README's test
    command passes on a fresh machine; under ``MODELHAUL_REQUIRE_SYSTEM=1`` it fails."""
    # Debian keeps daemons in /usr/sbin, which a user's PATH often leaves out, and
    # PostgreSQL's programs in /usr/lib/postgresql/<N>/bin, on no PATH (newest first).
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_system_dirs()))
    if found:
        return found
    package = package or SYSTEM_PACKAGES[name]
    reason = f"needs {name} (Debian package {package}): not installed"
    if os.environ.get(REQUIRE_SYSTEM) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_SYSTEM}=1 requires it", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def big_files(tmp_path_factory):
    """A folder with random files shared by the slow tests: 256 MiB ``big.bin``."""
    from downloader.testing.nginx import write_random_file

    root = tmp_path_factory.mktemp("served")
    write_random_file(root / "big.bin", 256 << 20, seed=256)
    return root


@pytest.fixture(scope="session")
def nginx_server(tmp_path_factory, request):
    """nginx on a free port serving ``big_files`` (``/slow/`` at 20 MB/s per connection)."""
    from downloader.testing.nginx import start_nginx

    system_program("nginx")  # before writing the files it would serve
    big_files = request.getfixturevalue("big_files")
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
            [system_program("mount"), "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
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


# Tests that measure a rate or a number of seconds (a limit held within 10 %, a pause seen
# within a second, slow-edge ratios): README's test command runs them after the others,
# alone, so that a neighbour in the other test process cannot skew what they measure.
SERIAL_FILES = {
    "test_live_limit.py",
    "test_engine_slow.py",
    "test_fleet_limits.py",
    "test_fleet.py",
    "test_server_processes.py",
    "test_cli_interrupt.py",
    "test_web_page.py",
}


def pytest_collection_modifyitems(config, items) -> None:  # type: ignore[no-untyped-def]
    for item in items:
        if item.path.name in SERIAL_FILES:
            item.add_marker(pytest.mark.serial)
