"""What a hostile origin costs modelhaul: wall time, CPU and peak RSS of ``modelhaul get``
against each size and endless-body attack of ``downloader.testing.hostile``, beside an
honest origin serving the same file. Needs GNU time (Debian package ``time``).

    python benchmarks/hostile_bench.py [--size 24M] [--timeout 60] [--json]

A row that says "still running" is a defect: every attack must end, in bounded memory.
``--json`` prints the rows as a JSON list instead (``python -m benchmarks`` reads it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

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


async def one(attack: OriginAttack, data: bytes, timeout: float) -> dict[str, Any]:
    """One ``modelhaul get`` against ``attack``: its figures, and whether it ended at all."""
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
            row: dict[str, Any] = {"attack": attack.value}
            try:
                run = await asyncio.to_thread(timed, command, env=env, check=False, timeout=timeout)
            except subprocess.TimeoutExpired:
                return {**row, "outcome": f"still running after {timeout:.0f} s"}
            exact = Path(work, "dest", "m.bin").is_file() and (
                Path(work, "dest", "m.bin").read_bytes() == data
            )
            return {
                **row,
                "exit": run.code,
                "wall_s": run.wall,
                "cpu_s": run.cpu,
                "peak_rss_MiB": run.rss_mib,
                "served_MiB": origin.served / 2**20,
                "outcome": "byte-exact" if exact else "no file",
            }


def line(row: dict[str, Any]) -> str:
    if "exit" not in row:
        return f"{row['attack']:15} {row['outcome']}"
    return (
        f"{row['attack']:15} exit {row['exit']}  {row['wall_s']:5.2f} s  "
        f"CPU {row['cpu_s']:5.2f} s  "
        f"peak RSS {row['peak_rss_MiB']:6.1f} MiB  served {row['served_MiB']:7.1f} MiB  "
        f"{row['outcome']}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="24M", help="the file's size (default 24M)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per run")
    parser.add_argument("--json", action="store_true", help="the rows as JSON")
    args = parser.parse_args()
    data = random.Random(14).randbytes(parse_size(args.size))
    rows = []
    for attack in ATTACKS:
        rows.append(await one(attack, data, args.timeout))
        if not args.json:
            print(line(rows[-1]), flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
