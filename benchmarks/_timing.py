"""Run a command as a whole process and read the kernel's accounting of it.

Each command runs under GNU time (``/usr/bin/time``, Debian package ``time``): it forks from
a small process, so the peak RSS it reports is the command's own, not a copy of ours.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

GNU_TIME = shutil.which("time") or "/usr/bin/time"
REPO = Path(__file__).resolve().parent.parent


def byte_compile() -> None:
    """Compile modelhaul's modules to bytecode first, as ``pip install`` does: a checkout
    run under ``PYTHONDONTWRITEBYTECODE`` would otherwise compile about a hundred modules
    from source on every start (0.15 s here), a cost no installed copy pays."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "downloader", "storage", "migrations"],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def modelhaul_get(url: str, target: Path, home: Path, connections: int = 16) -> list[str]:
    """``modelhaul get URL -o TARGET`` as a user runs it (quiet, a ledger in ``home``)."""
    return [
        "env",
        f"MODELHAUL_HOME={home}",
        sys.executable,
        "-m",
        "downloader",
        "get",
        url,
        "-o",
        str(target),
        "-q",
        "--connections",
        str(connections),
    ]


@dataclass(frozen=True)
class Run:
    """One finished run: wall seconds, CPU seconds (user + sys), peak RSS in MiB."""

    wall: float
    cpu: float
    rss_mib: float
    code: int = 0


def timed(
    command: list[str],
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float | None = None,
) -> Run:
    """Run ``command`` to its end (its output discarded); raises if it fails (unless
    ``check`` is off) or outlives ``timeout`` (``subprocess.TimeoutExpired``)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        # Its own process group, so that a run past ``timeout`` ends with all it started.
        proc = subprocess.Popen(
            [GNU_TIME, "-o", report.name, "-f", "%e %U %S %M", *command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        if check and proc.returncode != 0:
            tail = stderr.decode(errors="replace")[-2000:]
            raise RuntimeError(f"{command[0]} failed ({proc.returncode}): {tail}")
        wall, user, system, rss_kib = Path(report.name).read_text().split()[-4:]
    return Run(float(wall), float(user) + float(system), int(rss_kib) / 1024, proc.returncode)


def median(runs: list[Run]) -> Run:
    """The median of each figure."""
    return Run(
        statistics.median(r.wall for r in runs),
        statistics.median(r.cpu for r in runs),
        statistics.median(r.rss_mib for r in runs),
    )


def aria2c_command(url: str, out: Path, name: str = "model.bin") -> list[str]:
    """aria2c as every benchmark runs it: 16 connections, 1 MiB pieces, no preallocation."""
    return [
        "aria2c",
        "-q",
        "-x16",
        "-s16",
        "-k1M",
        "--file-allocation=none",
        "--allow-overwrite=true",
        "-d",
        str(out),
        "-o",
        name,
        url,
    ]
