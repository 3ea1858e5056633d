"""Latency with loss: one file over a link with 50 ms round trips and about 1 % packet loss,
for modelhaul, aria2c and curl.

    python benchmarks/netem_bench.py [--size 256M] [--delay 25ms] [--loss 0.5%] [--runs 1]
        [--tools modelhaul,aria2c,curl] [--dir DIR] [--json]

Builds its own link and takes it down at the end: a network namespace and a veth pair with
unique names (``mhb<pid>``), ``tc qdisc ... netem delay 25ms loss 0.5%`` on both ends (so a
round trip meets 50 ms and about 1 % of packets lost), and segmentation offload at one
packet per segment so that netem drops packets, not 64 KiB super-packets. Our test origin
(``python -m downloader.testing.serve_origin --host``) listens on the host's end: nginx's
starter binds 127.0.0.1 only, which the namespace cannot reach. The tools run inside the
namespace (``ip netns exec``) under GNU time, medians of ``--runs``:

- modelhaul: ``modelhaul get -o FILE -q --connections 16``, as in engine_bench;
- ``aria2c -x16 -s16 -k1M --file-allocation=none`` + ``sync FILE``;
- ``curl -o`` + ``sync FILE``: one connection, what loss costs a single stream.

Prints MB/s, CPU seconds per GiB and peak RSS per tool, the measured round trip (TCP
connect time, the least of three) and modelhaul's throughput over each peer's. Needs root
(namespaces), ``ip`` and ``tc`` (Debian: iproute2), a kernel with ``sch_netem``, aria2c,
curl and GNU time; where the kernel or permissions refuse, exits 3 with the reason
(``_skip.py``: ``python -m benchmarks`` records it as skipped). ``--delay 0 --loss 0`` runs
the same namespace with no netem at all, a baseline that needs no ``sch_netem``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _skip import skip
from _timing import Run, aria2c_command, byte_compile, median, modelhaul_get, timed

from downloader.settings import parse_size
from downloader.testing.nginx import write_random_file

MB = 1_000_000


@dataclass(frozen=True)
class Link:
    """The namespace the tools run in and the host's address on its veth pair."""

    namespace: str
    host_address: str

    def inside(self, command: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *command]


def ip(*args: str) -> None:
    """Run one ``ip``/``tc`` step; raises with the tool's own words where it refuses."""
    done = subprocess.run(list(args), capture_output=True, text=True)
    if done.returncode != 0:
        raise OSError(f"`{' '.join(args)}` failed: {done.stderr.strip() or done.returncode}")


@contextmanager
def impaired_link(delay: str, loss: str) -> Iterator[Link]:
    """A namespace joined to the host by a veth pair with netem on both ends; removed at the
    end whatever happens (deleting one end of a veth pair deletes both)."""
    tag = f"mhb{os.getpid()}"[:12]  # interface names hold 15 characters
    namespace, outer, inner = tag, f"{tag}a", f"{tag}b"
    # A /30 of its own per process, so two runs side by side do not share a route.
    subnet = f"10.213.{os.getpid() % 250}"
    netem = ["netem", "delay", delay, "loss", loss, "limit", "100000"]
    try:
        try:
            ip("ip", "netns", "add", namespace)
            ip(
                "ip",
                "link",
                "add",
                outer,
                "type",
                "veth",
                "peer",
                "name",
                inner,
                "netns",
                namespace,
            )
            ip("ip", "link", "set", outer, "gso_max_segs", "1")
            ip("ip", "-n", namespace, "link", "set", inner, "gso_max_segs", "1")
            ip("ip", "addr", "add", f"{subnet}.1/30", "dev", outer)
            ip("ip", "-n", namespace, "addr", "add", f"{subnet}.2/30", "dev", inner)
            ip("ip", "link", "set", outer, "up")
            ip("ip", "-n", namespace, "link", "set", inner, "up")
            ip("ip", "-n", namespace, "link", "set", "lo", "up")
        except OSError as error:
            skip(f"cannot build a network namespace with a veth pair here: {error}")
        if delay not in ("0", "0ms") or loss not in ("0", "0%"):
            try:
                ip("tc", "qdisc", "add", "dev", outer, "root", *netem)
                ip("tc", "-n", namespace, "qdisc", "add", "dev", inner, "root", *netem)
            except OSError as error:
                skip(f"the kernel refuses netem (no sch_netem module?): {error}")
        yield Link(namespace, f"{subnet}.1")
    finally:
        subprocess.run(["ip", "link", "del", outer], capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


@contextmanager
def origin(www: Path, host: str) -> Iterator[str]:
    """Our test origin in its own process on ``host``; yields the file's URL."""
    command = [sys.executable, "-m", "downloader.testing.serve_origin", str(www), "--host", host]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "serving N files at URL/files/"
        if " at " not in line:
            raise RuntimeError(f"the origin did not start on {host}")
        yield line.split(" at ")[1].strip() + "model.bin"
    finally:
        proc.terminate()
        proc.wait()


def round_trip_ms(link: Link, url: str) -> float:
    """TCP connect time from inside the namespace: one round trip (the least of three, as a
    lost SYN costs a second)."""
    times = []
    for _ in range(3):
        done = subprocess.run(
            link.inside(
                ["curl", "-s", "-r", "0-0", "-o", "/dev/null", "-w", "%{time_connect}", url]
            ),
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(float(done.stdout) * 1000)
    return min(times)


def command(tool: str, url: str, out: Path) -> list[str]:
    target = out / "model.bin"
    if tool == "modelhaul":
        return modelhaul_get(url, target, out / "home")
    if tool == "aria2c":
        return aria2c_command(url, out)
    return ["curl", "-s", "-o", str(target), url]


def measure(link: Link, url: str, tools: list[str], work: Path, runs: int) -> dict[str, Run]:
    """Each round runs every tool once, in turn; the peers' times include ``sync FILE``."""
    taken: dict[str, list[Run]] = {}
    for _ in range(runs):
        for tool in tools:
            out = work / "out"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            subprocess.run(["sync"], check=True)
            run = timed(link.inside(command(tool, url, out)))
            if tool != "modelhaul":  # modelhaul fsyncs before it renames
                flush = timed(["sync", str(out / "model.bin")])
                run = Run(run.wall + flush.wall, run.cpu + flush.cpu, run.rss_mib)
            taken.setdefault(tool, []).append(run)
    return {tool: median(r) for tool, r in taken.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256M")
    parser.add_argument("--delay", default="25ms", help="netem delay on each end")
    parser.add_argument("--loss", default="0.5%", help="netem loss on each end")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--tools", default="modelhaul,aria2c,curl")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (on the disk to test)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    byte_compile()
    tools = [t for t in args.tools.split(",") if t]
    if unknown := sorted(set(tools) - {"modelhaul", "aria2c", "curl"}):
        parser.error(f"unknown tool {', '.join(unknown)} (known: modelhaul, aria2c, curl)")
    if os.geteuid() != 0:
        skip("needs root to create a network namespace and its netem qdiscs")
    for program in ("ip", "tc", "curl", "time", *(t for t in tools if t != "modelhaul")):
        if not shutil.which(program):
            skip(f"{program} is not installed (Debian: iproute2 aria2 curl time)")
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="netem-bench-") as tmp:
        work = Path(tmp)
        (work / "www").mkdir()
        write_random_file(work / "www" / "model.bin", size, seed=20)
        with (
            impaired_link(args.delay, args.loss) as link,
            origin(work / "www", link.host_address) as url,
        ):
            rtt = round_trip_ms(link, url)
            results = measure(link, url, tools, work, args.runs)
    report(results, size, rtt, args)


def report(results: dict[str, Run], size: int, rtt: float, args: argparse.Namespace) -> None:
    gib = size / (1 << 30)
    rows = [
        {
            "tool": tool if tool == "modelhaul" else f"{tool} + sync",
            "size_MB": size / MB,
            "rtt_ms": rtt,
            "netem": f"delay {args.delay} loss {args.loss} each way",
            "MB/s": size / MB / run.wall,
            "cpu_s_per_GiB": run.cpu / gib,
            "peak_rss_MB": run.rss_mib * 1.048576,
            "wall_s": run.wall,
        }
        for tool, run in results.items()
    ]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(
        f"latency with loss: {size / MB:.0f} MB, netem delay {args.delay} loss {args.loss} on "
        f"each end, measured round trip {rtt:.1f} ms, medians of {args.runs} runs"
    )
    print(f"{'tool':15} {'MB/s':>8} {'seconds':>8} {'CPU s/GiB':>10} {'peak RSS MB':>12}")
    for r in rows:
        print(
            f"{r['tool']:15} {r['MB/s']:8.2f} {r['wall_s']:8.2f} {r['cpu_s_per_GiB']:10.2f} "
            f"{r['peak_rss_MB']:12.1f}"
        )
    ours = next((r["MB/s"] for r in rows if r["tool"] == "modelhaul"), None)
    for r in rows:
        if ours and r["tool"] != "modelhaul":
            print(f"  modelhaul vs {r['tool']:15} {ours / r['MB/s']:.2f}x")


if __name__ == "__main__":
    main()
