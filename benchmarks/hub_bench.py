"""A whole repo from a local Hugging Face Hub: modelhaul against huggingface_hub.

    python benchmarks/hub_bench.py [--small 200] [--small-size 4M] [--big 2] [--big-size 1G]
                                   [--cdn-rate 20M] [--runs 3] [--dir DIR] [--json]

Builds a repo of --small files of --small-size plus --big files of --big-size, serves it with
the local hub (``python -m downloader.testing.hub``) whose CDN is throttled to --cdn-rate per
connection, then times, each --runs times into a fresh cache, as whole processes:

- ``huggingface_hub.snapshot_download`` (plain HTTP: the hub sends no Xet headers; 8 files at
  once, one connection each), with ``HF_ENDPOINT`` at the local hub;
- modelhaul's ``download_model("huggingface", repo)`` into the same kind of cache (SHA-256
  of every LFS file checked against the published digest).

Prints median seconds and MB/s of each and the speed-up. Target (issue 5): >= 1.5x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _timing import byte_compile, timed

from downloader.settings import parse_size
from downloader.testing.modelfiles import write_gguf, write_safetensors

MB = 1_000_000
HERE = Path(__file__).resolve().parent


def build_repo(folder: Path, args: argparse.Namespace) -> int:
    small, big = parse_size(args.small_size), parse_size(args.big_size)
    folder.mkdir(parents=True)
    total = 0
    (folder / "config.json").write_text('{"model_type": "bench"}')
    # Real headers: modelhaul checks every GGUF and safetensors file it downloads.
    for i in range(args.small):
        shard = folder / f"shard-{i:04}.safetensors"
        write_safetensors(shard, {f"w{i}": (small // 4,)}, seed=i)
        total += shard.stat().st_size
    for i in range(args.big):
        total += write_gguf(folder / f"big-{i}.gguf", size=big, seed=100 + i).stat().st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--small-size", default="4M")
    parser.add_argument("--big", type=int, default=2)
    parser.add_argument("--big-size", default="1G")
    parser.add_argument("--cdn-rate", default="20M")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON row per tool")
    args = parser.parse_args()
    byte_compile()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="hub-bench-") as tmp:
        work = Path(tmp)
        total = build_repo(work / "repos" / "bench" / "model", args)
        subprocess.run(["sync"], check=True)
        hub = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "downloader.testing.hub",
                str(work / "repos"),
                "--cdn-throttle",
                args.cdn_rate,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            line = hub.stdout.readline() if hub.stdout else ""
            endpoint = line.split()[2]
            results = run(args, work, endpoint)
        finally:
            hub.terminate()
            hub.wait()
    report(results, total, args)


def run(args: argparse.Namespace, work: Path, endpoint: str) -> dict[str, list[float]]:
    base = dict(
        os.environ,
        HF_ENDPOINT=endpoint,
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    hf_code = "from huggingface_hub import snapshot_download; snapshot_download('bench/model')"
    times: dict[str, list[float]] = {"huggingface_hub": [], "modelhaul": []}
    for i in range(args.runs):
        for tool in times:
            cache = work / f"cache-{tool}-{i}"
            env = dict(base, HF_HUB_CACHE=str(cache), MODELHAUL_HOME=str(work / f"mh-{i}"))
            if tool == "huggingface_hub":
                command = [sys.executable, "-c", hf_code]
            else:
                command = [sys.executable, str(HERE / "_modelhaul_get.py"), "hf://bench/model"]
            subprocess.run(["sync"], check=True)
            times[tool].append(timed(command, env=env).wall)
            subprocess.run(["rm", "-rf", str(cache)], check=True)
    return times


def report(times: dict[str, list[float]], total: int, args: argparse.Namespace) -> None:
    if args.json:
        medians = {tool: statistics.median(t) for tool, t in times.items()}
        rows = [
            {
                "tool": tool,
                "wall_s": seconds,
                "MB/s": total / MB / seconds,
                "speedup_vs_huggingface_hub": medians["huggingface_hub"] / seconds,
                "bytes": total,
            }
            for tool, seconds in medians.items()
        ]
        print(json.dumps(rows, indent=1))
        return
    print(
        f"hub benchmark: {args.small} x {args.small_size} + {args.big} x {args.big_size} "
        f"({total / MB:.0f} MB), CDN at {args.cdn_rate}/s per connection, medians of {args.runs}"
    )
    medians = {tool: statistics.median(t) for tool, t in times.items()}
    for tool, seconds in medians.items():
        runs = ", ".join(f"{t:.1f}" for t in times[tool])
        print(f"  {tool:16} {seconds:8.1f} s {total / MB / seconds:8.1f} MB/s   (runs: {runs})")
    speedup = medians["huggingface_hub"] / medians["modelhaul"]
    print(f"  modelhaul is {speedup:.2f}x faster than huggingface_hub (target >= 1.5x)")


if __name__ == "__main__":
    main()
