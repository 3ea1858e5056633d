"""A real PostgreSQL server for the tests and benchmarks: ``initdb`` in a temporary folder,
``pg_ctl`` on a free port of 127.0.0.1, a fresh database per test copied from a migrated
template.

Debian keeps the server's programs in ``/usr/lib/postgresql/<N>/bin`` (not on ``PATH``):
``bindir()`` finds them (``tests/conftest.py`` skips where they are missing). PostgreSQL
refuses to run as root, so as root every server program runs as the ``postgres`` user
(``runuser``) in a folder that user owns. Durability is traded for speed (``fsync=off``,
``synchronous_commit=off``): a test server that loses its data on a power cut loses
nothing of value.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from storage import open_ledger

LEDGER_ENV = "MODELHAUL_LEDGER"
TEMPLATE = "modelhaul_template"
START_SECONDS = 30


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    """One PostgreSQL cluster of our own: its programs, data folder and port."""

    bindir: Path
    root: Path  # data/, sockets/, server.log
    port: int
    _names: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sockets(self) -> Path:
        return self.root / "sockets"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of one of its databases (trust auth: no password)."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def child_env(self, database: str, env: dict[str, str] | None = None) -> dict[str, str]:
        """``env`` (default: ours) with ``MODELHAUL_LEDGER`` naming ``database``: what a child
        ``modelhaul`` or worker process is started with to share that ledger."""
        out = dict(os.environ if env is None else env)
        out[LEDGER_ENV] = self.url(database)
        return out

    # --- the server ----------------------------------------------------------------------

    def init(self) -> None:
        """Create the cluster: trust for local connections (127.0.0.1 only listens)."""
        self.sockets.mkdir(parents=True)
        _own(self.root)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )

    def start(self) -> None:
        """Start it (``pg_ctl start -w``) on its port, its socket in our folder."""
        options = " ".join(
            (
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.sockets}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
                "-c shared_buffers=32MB",
            )
        )
        self._run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            str(START_SECONDS),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
        )

    def stop(self) -> None:
        """Stop it at once (``-m fast``: open connections are cut, as a crash would)."""
        self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data))

    def restart(self) -> None:
        """Stop, then start again on the same port and data: the database going away and
        coming back (what a worker sees when its PostgreSQL restarts)."""
        self.stop()
        self.start()

    def is_running(self) -> bool:
        """Whether ``pg_ctl status`` finds the server up."""
        return self._run("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0

    def destroy(self) -> None:
        """Stop it if it runs and remove its folder."""
        if self.data.exists() and self.is_running():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- databases -----------------------------------------------------------------------

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with ``psql`` (over the local socket) and return its output."""
        result = self._run(
            "psql",
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.sockets),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-c",
            statement,
        )
        return result.stdout.strip()

    def create_template(self) -> None:
        """A database migrated to head once per session, which fresh ones are copied from."""
        self.sql(f"CREATE DATABASE {TEMPLATE}")
        _run_coroutine(_open_and_close(self.url(TEMPLATE)))

    def new_database(self, *, migrated: bool = True) -> str:
        """A fresh database (a copy of the migrated template, or empty); its name."""
        name = f"t{os.getpid()}_{next(self._names)}"
        template = TEMPLATE if migrated else "template0"
        self.sql(f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY")
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, cutting whoever is still connected to it."""
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bindir / program), *args]
        if os.geteuid() == 0:  # PostgreSQL will not run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{program} {' '.join(args[:2])} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}\n{log}"
            )
        return result


def start_server(bindir: Path) -> PostgresServer:
    """A new cluster, started and holding a migrated template database."""
    # Not under pytest's tmp_path: its parents are private to root, and as root the server
    # runs as ``postgres``, which must reach its data folder.
    root = Path(tempfile.mkdtemp(prefix="modelhaul-pg-"))
    os.chmod(root, 0o755)
    server = PostgresServer(bindir=bindir, root=root, port=free_port())
    try:
        server.init()
        server.start()
        server.create_template()
    except BaseException:
        server.destroy()
        raise
    return server


def _own(root: Path) -> None:
    if os.geteuid() != 0:
        return
    shutil.chown(root, "postgres", "postgres")
    for path in root.rglob("*"):
        shutil.chown(path, "postgres", "postgres")


async def _open_and_close(url: str) -> None:
    ledger = await open_ledger(url)
    await ledger.close()


def _run_coroutine(coroutine) -> None:  # type: ignore[no-untyped-def]
    # On a thread of its own: a fixture may be set up while the test's event loop runs.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coroutine).result()


def bindir() -> Path | None:
    """Debian's PostgreSQL programs (``/usr/lib/postgresql/<N>/bin``, newest first, or on
    ``PATH``); None where the server is not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    dirs = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    return next((d for d in dirs if (d / "initdb").exists()), None)
