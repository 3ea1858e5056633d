"""Ledger speed: enqueue rate, transitions per second, one 64-chunk checkpoint.

The checkpoint is timed twice: with every chunk on a block boundary, and with every chunk
ending mid-block (one more digest each, as since issue 20 a kill loses no partial block);
``plan_records_64_us`` is the engine's side of one checkpoint, reading 64 spans that each
have a partial block into records.

    python benchmarks/ledger_bench.py [--dir DIR] [--rounds 5] [--json]

Each figure is the median of several rounds on a fresh ledger file in DIR (default: the
system temp dir; give a folder on the disk you care about). Targets (issue 2): 10,000 tasks
enqueued in under 1 s, at least 2,000 transitions/s, a 64-chunk checkpoint under 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from storage import ChunkRecord, FileCheckpoint, NewFile, NewTask, TaskState, open_ledger

TARGETS = {
    "enqueue_10k_s": 1.0,
    "transitions_per_s": 2000.0,
    "checkpoint_64_ms": 5.0,
    "checkpoint_64_partial_ms": 5.0,
    "plan_records_64_us": 1000.0,
}


async def enqueue_10k(folder: Path) -> float:
    async with await open_ledger(folder / "enqueue.db") as ledger:
        tasks = [NewTask("url", f"https://example.com/{i}.gguf", f"/m/{i}") for i in range(10_000)]
        t0 = time.perf_counter()
        await ledger.tasks.enqueue(tasks)
        return time.perf_counter() - t0


async def transitions(folder: Path, count: int = 2000) -> float:
    async with await open_ledger(folder / "transitions.db") as ledger:
        ids = await ledger.tasks.enqueue(
            [NewTask("url", f"https://e/{i}", "/m") for i in range(100)]
        )
        moves = [(TaskState.PENDING, TaskState.PAUSED), (TaskState.PAUSED, TaskState.PENDING)]
        t0 = time.perf_counter()
        for n in range(count):
            frm, to = moves[(n // len(ids)) % 2]
            await ledger.tasks.transition(ids[n % len(ids)], to, reason="bench", expect=frm)
        return count / (time.perf_counter() - t0)


async def checkpoint_64(folder: Path, repeats: int = 50, partial: int = 0) -> float:
    """One checkpoint of 64 chunks; with ``partial``, each ends that many bytes into a block."""
    async with await open_ledger(folder / f"checkpoint{partial}.db") as ledger:
        [task_id] = await ledger.tasks.enqueue([NewTask("url", "https://e/big", "/m/big")])
        mib = 1 << 20
        [f] = await ledger.files.add(
            task_id, [NewFile("https://e/big", "big", "/m/big", mib, size=64 * 64 * mib)]
        )
        await ledger.files.replace_chunks(
            f.id, [ChunkRecord(f.id, i * 64 * mib, (i + 1) * 64 * mib) for i in range(64)]
        )
        times = []
        for r in range(1, repeats + 1):
            done, digests = r * mib + partial, b"\0" * 8 * (r + (1 if partial else 0))
            chunks = tuple(
                ChunkRecord(f.id, i * 64 * mib, (i + 1) * 64 * mib, done, digests)
                for i in range(64)
            )
            t0 = time.perf_counter()
            await ledger.files.checkpoint([FileCheckpoint(f.id, chunks, 64 * done)])
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000


def plan_records_64(repeats: int = 200) -> float:
    """The engine's side of a checkpoint: 64 spans with 3.3 blocks written each, read into
    records (the partial block's digest included)."""
    from downloader.engine.plan import Plan

    mib = 1 << 20
    plan = Plan.fresh(
        64 * 64 * mib, connections=16, block=mib, min_chunk=mib, max_chunk=64 * mib, min_steal=mib
    )
    for span in plan.spans:
        for _ in range(3):
            span.digests += b"\0" * 8
        span.hasher.update(b"x" * 345_678)
        span.done = 3 * mib + 345_678
        span.wrote(mib)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        plan.records(1)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


async def run(folder: Path, rounds: int) -> dict[str, float]:
    results: dict[str, list[float]] = {k: [] for k in TARGETS}
    for r in range(rounds):
        sub = folder / f"round{r}"
        sub.mkdir()
        results["enqueue_10k_s"].append(await enqueue_10k(sub))
        results["transitions_per_s"].append(await transitions(sub))
        results["checkpoint_64_ms"].append(await checkpoint_64(sub))
        results["checkpoint_64_partial_ms"].append(await checkpoint_64(sub, partial=345_678))
        results["plan_records_64_us"].append(plan_records_64())
    return {k: statistics.median(v) for k, v in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="folder for the ledger files")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="ledger-bench-") as folder:
        figures = asyncio.run(run(Path(folder), args.rounds))
    if args.json:
        print(json.dumps(figures))
        return
    print(f"ledger benchmark, median of {args.rounds} rounds")
    rows = [
        ("enqueue 10,000 tasks", figures["enqueue_10k_s"], "s", "<", TARGETS["enqueue_10k_s"]),
        ("transitions", figures["transitions_per_s"], "/s", ">=", TARGETS["transitions_per_s"]),
        ("checkpoint of 64 chunks", figures["checkpoint_64_ms"], "ms", "<", 5.0),
        ("... ending mid-block", figures["checkpoint_64_partial_ms"], "ms", "<", 5.0),
        ("plan records of 64 spans", figures["plan_records_64_us"], "us", "<", 1000.0),
    ]
    for name, value, unit, op, target in rows:
        met = value < target if op == "<" else value >= target
        verdict = "met" if met else "MISSED"
        print(f"  {name:26} {value:10.3f} {unit:3} target {op} {target:g}  {verdict}")


if __name__ == "__main__":
    main()
