"""Engine throughput side by side with aria2c, parfive, curl and dd, on one file served by
nginx.

    python benchmarks/engine_bench.py [--size 2G] [--runs 3] [--dir DIR] [--connections 16]

Starts nginx on 127.0.0.1 (Debian's nginx-light) serving a random file, then, each --runs
times, for two scenarios (unthrottled, and nginx ``limit_rate 20m`` per connection):

- modelhaul: ``modelhaul get URL -o FILE -q --connections 16`` with a fresh home (so a new
  ledger each run); its time includes starting Python, building the ledger, fsync and the
  rename (no SHA-256: a plain URL publishes none, as for the others). Its modules are
  byte-compiled first, as an installed copy's are.
- ``aria2c -x16 -s16 -k1M --file-allocation=none``, parfive (``max_conn=16,
  max_splits=16``, otherwise as it ships; left out where it is not installed:
  ``pip install -e '.[bench]'``) and ``curl -o`` (unthrottled only: one connection at
  20 MB/s says nothing new), each timed alone and with ``sync FILE`` after, since none
  syncs: the figures "+ sync" compare on equal terms.
- ``curl -o /dev/null`` (unthrottled): what the network and nginx give one connection with
  no disk at all.
- ``dd + sync``: ``dd`` copying the served file (hot in the page cache) to the same disk
  with ``bs=8M conv=fdatasync``: what this disk can take.

Prints MB/s, CPU seconds per GiB and peak RSS (medians), then the ratios. Targets (issues 3
and 20): throughput >= 1.0x aria2c + sync in both scenarios, >= 0.8x dd + sync (within
1.25x) and >= 4x parfive + sync, peak RSS < 150 MB, CPU s/GiB beside aria2c's.
Needs nginx, aria2c, curl and GNU time (Debian: nginx-light aria2 curl time).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _timing import Run, aria2c_command, byte_compile, median, modelhaul_get, timed

from downloader.settings import parse_size
from downloader.testing.nginx import start_nginx, write_random_file

MB = 1_000_000
HERE = Path(__file__).resolve().parent
Plan = tuple[str, str, list[str], bool]
# The peers modelhaul's throughput is held against, and the target where it has one.
TARGETS = (
    ("aria2c + sync", 1.0),
    ("aria2c", None),
    ("dd + sync", 0.8),
    ("parfive + sync", 4.0),
    ("curl + sync", None),
    ("curl → /dev/null", None),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="2G")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (on the disk to test)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    byte_compile()
    for tool in ("nginx", "aria2c", "curl", "time"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is not installed: apt-get install nginx-light aria2 curl time")
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="engine-bench-") as tmp:
        work = Path(tmp)
        (work / "www").mkdir()
        write_random_file(work / "www" / "model.bin", size, seed=1)
        settle()
        server = start_nginx(work / "www", work / "nginx", slow_rate="20m")
        try:
            results = run_all(args, work, server)
        finally:
            server.stop()
    report(results, size, args)


def settle() -> None:
    """Flush every dirty page first, so no run pays for an earlier one's writeback."""
    subprocess.run(["sync"], check=True)


def has_parfive() -> bool:
    """parfive is a Python peer: present where the bench (or test) extra is installed."""
    return importlib.util.find_spec("parfive") is not None


def plans_for(args: argparse.Namespace, work: Path, server) -> list[Plan]:
    """What each round runs: (tool, scenario, command, sync the file after it)."""
    out = work / "out"
    target = out / "model.bin"
    source = work / "www" / "model.bin"
    dd = ["dd", f"if={source}", f"of={target}", "bs=8M", "conv=fdatasync", "status=none"]
    plans: list[Plan] = [("dd + sync", "unthrottled", dd, False)]
    for scenario, slow in (("unthrottled", False), ("throttled", True)):
        url = server.url("model.bin", slow=slow)
        get = modelhaul_get(url, target, work / "home", args.connections)
        plans.append(("modelhaul", scenario, get, False))
        plans.append(("aria2c", scenario, aria2c_command(url, out), True))
        if has_parfive():
            parfive = [sys.executable, str(HERE / "_parfive_get.py"), url, str(out), "model.bin"]
            plans.append(("parfive", scenario, parfive, True))
        if not slow:
            plans.append(("curl", scenario, ["curl", "-s", "-o", str(target), url], True))
            plans.append(
                ("curl → /dev/null", scenario, ["curl", "-s", "-o", "/dev/null", url], False)
            )
    return plans


def run_all(args: argparse.Namespace, work: Path, server) -> dict[str, dict]:
    """Each round runs every tool once, in turn (A B C A B C …), so drift hits all alike."""
    out = work / "out"
    out.mkdir()
    target = out / "model.bin"
    plans = plans_for(args, work, server)
    runs: dict[tuple[str, str], list[Run]] = {}
    synced: dict[tuple[str, str], list[Run]] = {}
    for _ in range(args.runs):
        for tool, scenario, command, sync in plans:
            target.unlink(missing_ok=True)
            shutil.rmtree(work / "home", ignore_errors=True)
            settle()
            run = timed(command)
            runs.setdefault((tool, scenario), []).append(run)
            if sync:
                flush = timed(["sync", str(target)])
                synced.setdefault((tool, scenario), []).append(
                    Run(run.wall + flush.wall, run.cpu + flush.cpu, run.rss_mib)
                )
    results: dict[str, dict] = {}
    for (tool, scenario), plain in runs.items():
        extra = synced.get((tool, scenario))
        results.setdefault(tool, {})[scenario] = (median(plain), median(extra) if extra else None)
    target.unlink(missing_ok=True)
    return results


def report(results: dict[str, dict], size: int, args: argparse.Namespace) -> None:
    gib = size / (1 << 30)
    rows = []
    for tool, scenarios in results.items():
        for scenario, (plain, synced) in scenarios.items():
            for label, run in (("", plain), (" + sync", synced)):
                if run is not None:
                    rows.append(
                        {
                            "tool": tool + label,
                            "scenario": scenario,
                            "size_MB": size / MB,
                            "MB/s": size / MB / run.wall,
                            "cpu_s_per_GiB": run.cpu / gib,
                            "peak_rss_MB": run.rss_mib * 1.048576,
                            "wall_s": run.wall,
                        }
                    )
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"engine benchmark: {size / MB:.0f} MB file, medians of {args.runs} runs")
    print(f"{'tool':18} {'scenario':12} {'MB/s':>8} {'CPU s/GiB':>10} {'peak RSS MB':>12}")
    for r in rows:
        print(
            f"{r['tool']:18} {r['scenario']:12} {r['MB/s']:8.1f} {r['cpu_s_per_GiB']:10.2f} "
            f"{r['peak_rss_MB']:12.1f}"
        )
    print("ratios (throughput, modelhaul over the other; its figure includes fsync):")
    for line in ratio_lines(rows):
        print("  " + line)


def ratio_lines(rows: list[dict]) -> list[str]:
    """modelhaul's throughput over each peer's, with the issue's target where it has one."""
    speed = {(r["tool"], r["scenario"]): r["MB/s"] for r in rows}
    cpu = {(r["tool"], r["scenario"]): r["cpu_s_per_GiB"] for r in rows}
    lines = []
    for scenario in ("unthrottled", "throttled"):
        mh = speed[("modelhaul", scenario)]
        for peer, target in TARGETS:
            if (peer, scenario) in speed:
                goal = f" (target >= {target})" if target else ""
                lines.append(
                    f"{scenario:12} vs {peer:18} {mh / speed[(peer, scenario)]:5.2f}x{goal}"
                )
        if ("aria2c", scenario) in cpu:
            lines.append(
                f"{scenario:12} CPU s/GiB {cpu[('modelhaul', scenario)]:.2f} "
                f"(aria2c {cpu[('aria2c', scenario)]:.2f})"
            )
    ours_rss = max(r["peak_rss_MB"] for r in rows if r["tool"] == "modelhaul")
    lines.append(f"peak RSS {ours_rss:.0f} MB (target < 150)")
    return lines


if __name__ == "__main__":
    main()
