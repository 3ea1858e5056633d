"""What a hostile origin costs modelhaul: wall time, CPU and peak RSS of ``modelhaul get``
against each size and endless-body attack of ``downloader.testing.hostile``, beside an
honest origin serving the same file. Needs GNU time (Debian package ``time``).

    python benchmarks/hostile_bench.py [--size 24M] [--timeout 60]

A row that says "still running" is a defect: every attack must end, in bounded memory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from _timing import timed

from downloader.settings import parse_size
from downloader.testing.hostile import HostileOrigin, OriginAttack

ATTACKS = (
    OriginAttack.HONEST,
    OriginAttack.SIZE_HUGE,
    OriginAttack.ENDLESS_PROBE,
    OriginAttack.ENDLESS_RANGES,
    OriginAttack.GZIP_RANGES,
)


async def one(attack: OriginAttack, data: bytes, timeout: float) -> str:
    with tempfile.TemporaryDirectory(prefix="modelhaul-hostile-") as work:
        async with HostileOrigin(attack, {"m.bin": data}) as origin:
            command = [
                sys.executable,
                "-m",
                "downloader",
                "get",
                origin.url("m.bin"),
                "--dest",
                f"{work}/dest/",
                "--home",
                f"{work}/home",
                "--connections",
                "4",
                "--quiet",
            ]
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
            try:
                run = await asyncio.to_thread(timed, command, env=env, check=False, timeout=timeout)
            except subprocess.TimeoutExpired:
                return f"{attack.value:15} still running after {timeout:.0f} s"
            exact = Path(work, "dest", "m.bin").is_file() and (
                Path(work, "dest", "m.bin").read_bytes() == data
            )
            return (
                f"{attack.value:15} exit {run.code}  {run.wall:5.2f} s  CPU {run.cpu:5.2f} s  "
                f"peak RSS {run.rss_mib:6.1f} MiB  served {origin.served / 2**20:7.1f} MiB  "
                f"{'byte-exact' if exact else 'no file'}"
            )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="24M", help="the file's size (default 24M)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per run")
    args = parser.parse_args()
    data = random.Random(14).randbytes(parse_size(args.size))
    for attack in ATTACKS:
        print(await one(attack, data, args.timeout), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
