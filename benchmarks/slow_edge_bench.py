"""The slow-edge ratio: how much longer a file takes when some connections are capped far
below the others (CDN edges that cap connections), for modelhaul, aria2c and curl.

    python benchmarks/slow_edge_bench.py [--size 512M] [--throttle 16M] [--every 4]
        [--runs 1] [--slow-seconds 3] [--tools modelhaul,aria2c,curl] [--dir DIR] [--json]

Serves a random file with our test origin (``python -m downloader.testing.serve_origin``) at
``--throttle`` per connection, once with every connection alike and once with every
``--every``-th connection capped at 1/20 of that (a fresh origin for each run, so each tool
meets the same sequence of connections). Times, medians of ``--runs``:

- modelhaul: ``downloader.testing.fetch`` with 16 connections and its defaults (a
  connection under a quarter of the median for ``--slow-seconds``, 3 s, hands its range
  over: on a run of a few seconds that wait is most of the cost);
- ``aria2c -x16 -s16 -k1M --file-allocation=none``;
- ``curl -o``: one connection, the origin's first, never a capped one; its ratio says
  what a single stream costs when its edge is fine, not what it costs when it is capped.

Prints seconds per tool and mode, and the ratio slow-edged / even (issue 17: the target is
1.3 or less for modelhaul); ``--json`` prints a row per tool as JSON instead (the progress
goes to stderr). Needs aria2c, curl and GNU time (Debian: aria2 curl time).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from _timing import aria2c_command, byte_compile, median, timed

from downloader.settings import parse_size
from downloader.testing.nginx import write_random_file


@contextmanager
def origin(www: Path, throttle: str, every: int | None, slow_rate: int):
    """Our origin in its own process; yields the file's URL."""
    serve = [sys.executable, "-m", "downloader.testing.serve_origin"]
    command = [*serve, str(www), "--throttle", throttle]
    if every:
        command += ["--slow-every", str(every), "--slow-rate", str(slow_rate)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "serving N files at URL/files/"
        yield line.split(" at ")[1].strip() + "model.bin"
    finally:
        proc.terminate()
        proc.wait()


def commands(tool: str, url: str, out: Path, slow_seconds: str) -> list[str]:
    target = out / "model.bin"
    if tool == "modelhaul":
        ledger = out / "ledger.db"
        fetch = [sys.executable, "-m", "downloader.testing.fetch"]
        return [*fetch, str(ledger), url, str(target), "16", "--slow-seconds", slow_seconds]
    if tool == "aria2c":
        return aria2c_command(url, out)
    return ["curl", "-s", "-o", str(target), url]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="512M")
    parser.add_argument("--throttle", default="16M", help="bytes per second per connection")
    parser.add_argument("--every", type=int, default=4, help="every Nth connection is capped")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--slow-seconds", default="3", help="modelhaul's slow_seconds")
    parser.add_argument("--tools", default="modelhaul,aria2c,curl")
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="a row per tool as JSON")
    args = parser.parse_args()
    byte_compile()
    progress = sys.stderr if args.json else sys.stdout
    tools = args.tools.split(",")
    for tool in [t for t in tools if t != "modelhaul"] + ["time"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed: apt-get install aria2 curl time")
    slow_rate = parse_size(args.throttle) // 20
    seconds: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="slow-edge-bench-") as tmp:
        work = Path(tmp)
        (work / "www").mkdir()
        write_random_file(work / "www" / "model.bin", parse_size(args.size), seed=17)
        for tool in tools:
            for mode, every in (("even", None), ("slow-edged", args.every)):
                runs = []
                for _ in range(args.runs):
                    out = work / "out"
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir()
                    with origin(work / "www", args.throttle, every, slow_rate) as url:
                        runs.append(timed(commands(tool, url, out, args.slow_seconds)))
                seconds[(tool, mode)] = median(runs).wall
                line = f"{tool:10} {mode:11} {seconds[(tool, mode)]:7.2f} s"
                print(line, file=progress, flush=True)
    if args.json:
        rows = [
            {
                "tool": tool,
                "size": args.size,
                "throttle": args.throttle,
                "even_s": seconds[(tool, "even")],
                "slow_edged_s": seconds[(tool, "slow-edged")],
                "ratio": seconds[(tool, "slow-edged")] / seconds[(tool, "even")],
            }
            for tool in tools
        ]
        print(json.dumps(rows, indent=1))
        return
    print(
        f"slow-edge ratio ({args.size}, {args.throttle}/s per connection, every "
        f"{args.every}th at 1/20; slow-edged / even):"
    )
    for tool in tools:
        print(f"  {tool:10} {seconds[(tool, 'slow-edged')] / seconds[(tool, 'even')]:.2f}x")


if __name__ == "__main__":
    main()
