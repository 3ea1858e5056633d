"""Start-up: how long modelhaul takes to answer, beside the Hugging Face CLI.

    python benchmarks/startup_bench.py [--runs 15] [--json]

Each pair is run in turn (modelhaul, then hf, then modelhaul again ...) so that a machine
whose speed drifts moves both alike; each figure is the median wall time of whole processes
(Python's start included), and each ratio the median of the pairs' ratios. ``modelhaul ls``
reads an empty home, ``hf cache ls`` an empty cache. Targets (issue 16): ``modelhaul --help``
at most 0.3x ``hf --help``; ``modelhaul ls`` at most 1.0x ``hf cache ls``. Needs ``time``
(GNU time) and ``hf``, which huggingface_hub installs beside modelhaul.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from _timing import timed

BIN = Path(sys.executable).parent
TARGETS = {"help": 0.3, "ls": 1.0}


def pairs(home: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Each comparison: (modelhaul's command, hf's)."""
    modelhaul, hf = str(BIN / "modelhaul"), str(BIN / "hf")
    return {
        "help": ([modelhaul, "--help"], [hf, "--help"]),
        "ls": ([modelhaul, "ls", "--home", str(home / "modelhaul")], [hf, "cache", "ls"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="pairs per comparison")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        (home / "hf" / "hub").mkdir(parents=True)
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
