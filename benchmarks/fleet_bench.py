"""Claims and tasks per second with 1, 2 and 4 workers, SQLite vs PostgreSQL.

Claims: N processes, each claiming one pending task at a time from 2,000 and moving it to
completed at once (the ledger alone: `claim` then `transition`). Tasks: N real `modelhaul
worker` processes sharing 300 small files (64 KiB) from our test origin, time from starting
the workers until all are completed (their start-up, the ledger, the runner and the transfer
together; a worker's start is about a twentieth of a one-worker run).

    python benchmarks/fleet_bench.py [--claims 2000] [--tasks 300]

PostgreSQL runs in a throw-away cluster of our own (Debian's `postgresql`), as the tests'.
Target (issue 19): claim throughput grows with workers; 4 workers on PostgreSQL take at
least 2.5x one worker's tasks per second on many small files.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from downloader.testing.postgres import bindir, start_server

MODELHAUL = str(Path(sys.executable).parent / "modelhaul")
REPO = Path(__file__).resolve().parent.parent
COUNTS = (1, 2, 4)

CLAIMER = """
import asyncio, os, sys, time
from storage import Lease, TaskState, open_ledger
async def main(url, go):
    ledger = await open_ledger(url)
    lease = Lease(host="bench", pid=os.getpid(), started=time.time())
    while time.time() < go:
        await asyncio.sleep(0.001)
    n = 0
    while True:
        got = await ledger.tasks.claim(lease, 1)
        if not got:
            break
        await ledger.tasks.transition(
            got[0].id, TaskState.COMPLETED, reason="done", if_owner=lease.owner
        )
        n += 1
    print(n, time.time())
    await ledger.close()
asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    pg_bin = bindir()
    server = start_server(pg_bin) if pg_bin is not None else None
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
            work = Path(tmp)
            backends = [("sqlite", lambda n: f"sqlite:///{work / f'l{n}.db'}")]
            if server is not None:
                backends.append(("postgresql", lambda n: server.url(server.new_database())))
            else:
                print(
                    "PostgreSQL is not installed (Debian: postgresql): SQLite only",
                    file=sys.stderr,
                )
            for name, url_for in backends:
                for count in COUNTS:
                    url = url_for(f"c{count}")
                    rate = claims(url, count, args.claims)
                    url = url_for(f"t{count}")
                    tasks_rate = asyncio.run(tasks(url, count, args.tasks, work / f"{name}{count}"))
                    rows.append(
                        {
                            "ledger": name,
                            "workers": count,
                            "claims_per_s": rate,
                            "tasks_per_s": tasks_rate,
                        }
                    )
                    # Progress on stderr: with --json, stdout is the JSON alone.
                    print(
                        f"{name} {count}: {rate:.0f} claims/s {tasks_rate:.1f} tasks/s",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        if server is not None:
            server.destroy()
    report(rows, args)


def claims(url: str, count: int, total: int) -> float:
    """Claims (each completed at once) per second of ``count`` processes together."""
    asyncio.run(_enqueue(url, total))
    go = time.time() + 2.0  # every process opened its ledger before the start
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, url, str(go)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(count)
    ]
    outs = [p.communicate()[0].split() for p in procs]
    done = sum(int(o[0]) for o in outs)
    assert done == total, (done, total)
    return done / (max(float(o[1]) for o in outs) - go)


async def _enqueue(url: str, total: int) -> None:
    from storage import NewTask, open_ledger

    ledger = await open_ledger(url)
    await ledger.tasks.enqueue(
        [NewTask("url", f"http://127.0.0.1:9/{i}", f"/tmp/fleet-bench/{i}") for i in range(total)]
    )
    await ledger.close()


async def tasks(url: str, count: int, total: int, out: Path) -> float:
    """Tasks per second of ``count`` real workers on ``total`` small files."""
    from downloader import DownloadManager
    from downloader.settings import Settings
    from downloader.testing.origin import Origin
    from storage import TaskState, open_ledger

    files = {f"f{i:04}.bin": os.urandom(64 * 1024) for i in range(total)}
    async with Origin(files) as origin:
        settings = Settings(home=out / "enqueuer", ledger=url)
        async with DownloadManager(settings) as m:
            await m.add_many(
                [{"spec": origin.url(n), "dest": str(out / "files" / n)} for n in files]
            )
        env = {**os.environ, "MODELHAUL_LEDGER": url, "MODELHAUL_HOME": str(out / "home")}
        started = time.monotonic()
        workers = [
            subprocess.Popen(
                [MODELHAUL, "worker", "--once", "--max-tasks", "8"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(count)
        ]
        ledger = await open_ledger(url)
        try:
            while await ledger.tasks.count([TaskState.COMPLETED]) < total:
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - started
        finally:
            await ledger.close()
            for w in workers:
                w.wait(timeout=60)
    return total / elapsed


def report(rows: list[dict], args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"\nfleet benchmark: {args.claims} claims, {args.tasks} tasks of 64 KiB")
    print(f"{'ledger':10} {'workers':>7} {'claims/s':>9} {'x1':>5} {'tasks/s':>8} {'x1':>5}")
    for r in rows:
        one = next(o for o in rows if o["ledger"] == r["ledger"] and o["workers"] == 1)
        print(
            f"{r['ledger']:10} {r['workers']:7} {r['claims_per_s']:9.0f} "
            f"{r['claims_per_s'] / one['claims_per_s']:5.2f} {r['tasks_per_s']:8.1f} "
            f"{r['tasks_per_s'] / one['tasks_per_s']:5.2f}"
        )


if __name__ == "__main__":
    main()
