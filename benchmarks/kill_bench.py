"""What SIGKILLs cost on a slow link: the bytes the origin served over the file's size.

    python benchmarks/kill_bench.py [--size 96M] [--throttle 300KB] [--connections 16]
        [--kills 3] [--seed 1] [--tree DIR] [--dir DIR] [--json]

Serves a random file with our test origin at ``--throttle`` bytes per second per
connection, runs ``python -m downloader.testing.fetch`` on it and kills it with SIGKILL
``--kills`` times, each 4-16 MiB (at random) of served traffic after the child's first
checkpoint, then lets a last child finish. Prints
the served/size ratio (issue 20: three kills of a 96 MiB file at 300 KB/s per connection,
target 1.25 or less) and what each kill cost.

``--tree`` runs the child from another checkout (``--tree /work/main`` for the figure
before a change); the origin and this script always come from this one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from downloader.settings import MiB, parse_size
from downloader.testing.nginx import write_random_file
from downloader.testing.origin import Origin

HERE = Path(__file__).resolve().parent.parent


def durable(ledger: Path) -> int:
    """The ledger's durable bytes, as any SQLite reader sees them."""
    if not ledger.exists():
        return 0
    with contextlib.closing(sqlite3.connect(ledger, timeout=30)) as db:
        try:
            return db.execute("SELECT COALESCE(SUM(done), 0) FROM chunks").fetchone()[0]
        except sqlite3.OperationalError:  # no tables yet
            return 0


def child(tree: Path, ledger: Path, url: str, dest: Path, connections: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(tree))
    command = [sys.executable, "-m", "downloader.testing.fetch", str(ledger), url, str(dest)]
    return subprocess.Popen(
        [*command, str(connections)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tree,
    )


async def run(args: argparse.Namespace, folder: Path) -> tuple[int, int, list[int]]:
    size = parse_size(args.size)
    source = folder / "www" / "model.bin"
    source.parent.mkdir()
    write_random_file(source, size, seed=args.seed)
    ledger, dest = folder / "ledger.db", folder / "out" / "model.bin"
    rng = random.Random(args.seed)
    costs = []
    async with Origin({"model.bin": source}, throttle=parse_size(args.throttle)) as origin:
        url = origin.url("model.bin")
        for _ in range(args.kills):
            proc = child(args.tree, ledger, url, dest, args.connections)
            began, before = origin.served, await asyncio.to_thread(durable, ledger)
            async with asyncio.timeout(600):
                # First the child's first checkpoint, then a random amount of traffic: so
                # the moment falls anywhere between two checkpoints and anywhere in a block.
                while proc.poll() is None and await asyncio.to_thread(durable, ledger) <= before:
                    await asyncio.sleep(0.01)
                target = origin.served + rng.randrange(4 * MiB, 16 * MiB)
                while proc.poll() is None and origin.served < target:
                    await asyncio.sleep(0.01)
            if proc.poll() is not None:
                raise SystemExit(f"the child ended before its kill: {proc.communicate()}")
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            await asyncio.sleep(0.2)  # let the origin notice the closed connections
            kept = await asyncio.to_thread(durable, ledger)
            costs.append((origin.served - began) - (kept - before))
        proc = child(args.tree, ledger, url, dest, args.connections)
        _, err = await asyncio.to_thread(proc.communicate, timeout=1200)
        if proc.returncode != 0:
            raise SystemExit(f"the last child failed: {err}")
        return origin.served, size, costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="96M")
    parser.add_argument("--throttle", default="300KB", help="bytes/s per connection")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tree", type=Path, default=HERE, help="checkout the child runs")
    parser.add_argument("--dir", type=Path, help="where the files go (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    args.tree = args.tree.resolve()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        served, size, costs = asyncio.run(run(args, Path(tmp)))
    if args.json:
        figures = {
            "kills": args.kills,
            "size": size,
            "served": served,
            "ratio": served / size,
            "refetched_MiB": (served - size) / MiB,
            "kill_costs_MiB": [cost / MiB for cost in costs],
        }
        print(json.dumps(figures))
        return
    how = f"{args.kills} kills, {args.connections} connections at {args.throttle}/s each"
    print(f"tree {args.tree}: {how}")
    for i, cost in enumerate(costs, 1):
        print(f"  kill {i}: {cost / MiB:.2f} MiB served and not recorded")
    print(f"served {served:,} bytes for {size:,}: ratio {served / size:.3f} (target <= 1.25)")


if __name__ == "__main__":
    main()
