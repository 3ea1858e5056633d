"""Run a command as a whole process and read the kernel's accounting of it.

Each command runs under GNU time (``/usr/bin/time``, Debian package ``time``): it forks from
a small process, so the peak RSS it reports is the command's own, not a copy of ours.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

GNU_TIME = shutil.which("time") or "/usr/bin/time"


@dataclass(frozen=True)
class Run:
    """One finished run: wall seconds, CPU seconds (user + sys), peak RSS in MiB."""

    wall: float
    cpu: float
    rss_mib: float


def timed(command: list[str], *, env: dict[str, str] | None = None) -> Run:
    """Run ``command`` to its end (its output discarded); raises if it fails."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        result = subprocess.run(
            [GNU_TIME, "-o", report.name, "-f", "%e %U %S %M", *command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            check=False,
        )
        if result.returncode != 0:
            tail = result.stderr.decode(errors="replace")[-2000:]
            raise RuntimeError(f"{command[0]} failed ({result.returncode}): {tail}")
        wall, user, system, rss_kib = Path(report.name).read_text().split()[-4:]
    return Run(float(wall), float(user) + float(system), int(rss_kib) / 1024)


def median(runs: list[Run]) -> Run:
    """The median of each figure."""
    return Run(
        statistics.median(r.wall for r in runs),
        statistics.median(r.cpu for r in runs),
        statistics.median(r.rss_mib for r in runs),
    )
