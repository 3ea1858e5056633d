"""A file from a peer vs from its origin, on loopback: home A downloads it once from nginx
and serves it (`modelhaul serve`); then, each --runs times, a fresh home B downloads it
from the origin alone and a fresh home B' with `--peer A`, both with the file's SHA-256
(`--checksum`, so both verify alike and the peer may be asked at all).

Reports the median wall time of each, the ratio, and how many bytes each source served
(the origin's from nginx's access log, the peer's from B's history).

    python benchmarks/peer_bench.py --size 1G --runs 3

Needs nginx and GNU time (Debian: nginx-light time).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _timing import Run, byte_compile, median, timed

from downloader.settings import parse_size
from downloader.testing.nginx import start_nginx, write_random_file

MB = 1_000_000
MODELHAUL = str(Path(sys.executable).parent / "modelhaul")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (on the disk to test)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    byte_compile()
    if not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():
        sys.exit("nginx is not installed: apt-get install nginx-light time")
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="peer-bench-") as tmp:
        work = Path(tmp)
        (work / "www").mkdir()
        write_random_file(work / "www" / "model.bin", size, seed=7)
        sha = _sha256(work / "www" / "model.bin")
        server = start_nginx(work / "www", work / "nginx")
        try:
            rows = run_all(args, work, server.url("model.bin"), sha, server)
        finally:
            server.stop()
    report(rows, size, args)


def run_all(args: argparse.Namespace, work: Path, url: str, sha: str, nginx) -> list[dict]:
    get = [MODELHAUL, "get", url, "--checksum", f"sha256={sha}", "--quiet"]
    env_a = {**os.environ, "MODELHAUL_HOME": str(work / "a")}
    timed([*get, "--dest", str(work / "a-files" / "model.bin")], env=env_a)
    port = _free_port()
    peer = f"http://127.0.0.1:{port}"
    serve = subprocess.Popen(
        [MODELHAUL, "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env_a,
    )
    try:
        _wait_for(f"{peer}/health")
        rows = []
        for i in range(args.runs):
            for name, extra in (("origin", []), ("peer", ["--peer", peer])):
                home = work / f"b-{name}-{i}"
                dest = work / f"b-files-{name}-{i}" / "model.bin"
                env = {**os.environ, "MODELHAUL_HOME": str(home)}
                logged = len(nginx.log())
                subprocess.run(["sync"], check=True)
                run = timed([*get, "--dest", str(dest), *extra], env=env)
                from_origin = sum(entry[4] for entry in nginx.log()[logged:])
                rows.append(
                    {
                        "source": name,
                        "run": run,
                        "origin_bytes": from_origin,
                        "history": _sources(env),
                    }
                )
                shutil.rmtree(dest.parent)
                shutil.rmtree(home)
        return rows
    finally:
        serve.terminate()
        serve.wait(timeout=10)


def report(rows: list[dict], size: int, args: argparse.Namespace) -> None:
    by: dict[str, list[Run]] = {}
    for r in rows:
        by.setdefault(r["source"], []).append(r["run"])
    med = {name: median(runs) for name, runs in by.items()}
    bytes_by = {
        name: (
            max(r["origin_bytes"] for r in rows if r["source"] == name),
            next(r["history"] for r in rows if r["source"] == name),
        )
        for name in by
    }
    if args.json:
        out = {
            name: {
                "wall_s": m.wall,
                "MB/s": size / MB / m.wall,
                "cpu_s": m.cpu,
                "peak_rss_MB": m.rss_mib * 1.048576,
                "origin_bytes_max": bytes_by[name][0],
                "sources": bytes_by[name][1],
            }
            for name, m in med.items()
        }
        print(json.dumps(out, indent=1))
        return
    print(f"peer benchmark: {size / MB:.0f} MB file on loopback, medians of {args.runs} runs")
    print(f"{'from':8} {'wall s':>8} {'MB/s':>8} {'CPU s':>7} {'RSS MB':>7} {'origin bytes':>14}")
    for name, m in med.items():
        print(
            f"{name:8} {m.wall:8.2f} {size / MB / m.wall:8.1f} {m.cpu:7.2f} "
            f"{m.rss_mib * 1.048576:7.1f} {bytes_by[name][0]:14,}"
        )
        for source, n in bytes_by[name][1].items():
            print(f"{'':8} {n:>14,} bytes from {source}")
    print(f"peer over origin (time): {med['peer'].wall / med['origin'].wall:.2f}x")


def _sources(env: dict[str, str]) -> dict[str, int]:
    """Bytes per source, as B's history says (``name: N bytes from URL; M bytes from …``)."""
    shown = subprocess.run(
        [MODELHAUL, "show", "1", "--json"], env=env, capture_output=True, text=True, check=True
    ).stdout
    text = json.dumps(json.loads(shown))
    pairs = re.findall(r"([\d,]+) bytes from ([^;\s\"]+)", text)
    return {url: int(n.replace(",", "")) for n, url in pairs}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


if __name__ == "__main__":
    main()
