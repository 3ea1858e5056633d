"""Start-up: how long modelhaul takes to answer, beside the Hugging Face CLI.

    python benchmarks/startup_bench.py [--runs 15] [--json]

Each pair is run in turn (modelhaul, then hf, then modelhaul again ...) so that a machine
whose speed drifts moves both alike; each figure is the median wall time of whole processes
(Python's start included), and each ratio the median of the pairs' ratios. ``modelhaul ls``
lists a ledger of 20 tasks, ``hf cache ls`` a cache of 20 repos (one file each). Targets
(issue 16): ``modelhaul --help`` at most 0.3x ``hf --help``; ``modelhaul ls`` at most 1.0x
``hf cache ls``. Needs ``time`` (GNU time) and ``hf``, which huggingface_hub installs beside
modelhaul.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from _timing import byte_compile, timed

BIN = Path(sys.executable).parent
TARGETS = {"help": 0.3, "ls": 1.0}


def pairs(home: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Each comparison: (modelhaul's command, hf's)."""
    modelhaul, hf = str(BIN / "modelhaul"), str(BIN / "hf")
    return {
        "help": ([modelhaul, "--help"], [hf, "--help"]),
        "ls": ([modelhaul, "ls", "--home", str(home / "modelhaul")], [hf, "cache", "ls"]),
    }


MODELS = 20


def fill(home: Path) -> None:
    """A ledger of MODELS tasks (one with its files) and an HF cache of MODELS repos."""
    from storage import NewFile, NewTask, open_ledger

    async def ledger() -> None:
        led = await open_ledger(home / "modelhaul" / "ledger.db")
        try:
            tasks = [
                NewTask("huggingface", f"org/model-{i}", str(home / "hf" / "hub"))
                for i in range(MODELS)
            ]
            ids = await led.tasks.enqueue(tasks)
            await led.files.add(ids[0], [NewFile("http://e/x", "x.gguf", "/x", 1 << 20, size=6)])
        finally:
            await led.close()

    asyncio.run(ledger())
    for i in range(MODELS):
        repo = home / "hf" / "hub" / f"models--org--model-{i}"
        data = f"model {i}\n".encode()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        commit = hashlib.sha1(data).hexdigest()
        link = repo / "snapshots" / commit / "model.gguf"
        for folder in (blob.parent, link.parent, repo / "refs"):
            folder.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link.symlink_to(Path("..", "..", "blobs", blob.name))
        (repo / "refs" / "main").write_text(commit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="pairs per comparison")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    byte_compile()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        fill(home)
        env = dict(
            os.environ,
            HF_HOME=str(home / "hf"),  # an empty cache for 'hf cache ls'
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_UPDATE_CHECK="1",
        )
        env.pop("MODELHAUL_HOME", None)
        for name, (ours, theirs) in pairs(home).items():
            timed(ours, env=env)  # a warm-up each: the first run reads the disk
            timed(theirs, env=env)
            a, b = [], []
            for _ in range(args.runs):
                a.append(timed(ours, env=env).wall)
                b.append(timed(theirs, env=env).wall)
            results[name] = {
                "modelhaul": " ".join(["modelhaul", *ours[1:2]]),
                "hf": " ".join(["hf", *theirs[1:]]),
                "modelhaul_s": statistics.median(a),
                "hf_s": statistics.median(b),
                "ratio": statistics.median(x / y for x, y in zip(a, b, strict=True)),
                "target": TARGETS[name],
            }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'':24} {'median s':>9} {'hf':>16} {'median s':>9} {'ratio':>6} {'target':>7}")
    for r in results.values():
        verdict = "ok" if r["ratio"] <= r["target"] else "MISSED"
        print(
            f"{r['modelhaul']:24} {r['modelhaul_s']:9.3f} {r['hf']:>16} {r['hf_s']:9.3f} "
            f"{r['ratio']:6.2f} {r['target']:6.1f}x {verdict}"
        )


if __name__ == "__main__":
    main()
