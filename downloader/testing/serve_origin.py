"""``python -m downloader.testing.serve_origin DIR``: the test origin serving a folder on its own
(for benchmarks and for trying a client by hand), with its throttle and slow edges."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from downloader.testing.faults import SlowEdges
from downloader.testing.origin import Origin


async def _serve_forever(args: argparse.Namespace, files: dict[str, Path]) -> None:
    from downloader.settings import parse_size

    origin = Origin(
        files,
        throttle=parse_size(args.throttle) if args.throttle else None,
        slow=SlowEdges(args.slow_every, parse_size(args.slow_rate)) if args.slow_every else None,
        host=args.host,
        port=args.port,
        signed_ttl=args.signed_ttl,
    )
    async with origin:
        print(f"serving {len(files)} files at {origin.base_url}/files/", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a folder with range support.")
    parser.add_argument("dir")
    parser.add_argument("--host", default="127.0.0.1", help="e.g. ::1 for IPv6 loopback")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--throttle", help="bytes per second per response, e.g. 10M")
    parser.add_argument("--signed-ttl", type=float, default=60.0)
    parser.add_argument("--slow-every", type=int, help="every Nth connection is slow")
    parser.add_argument("--slow-rate", default="1M", help="what a slow connection sends a second")
    args = parser.parse_args()
    files = {p.name: p for p in sorted(Path(args.dir).iterdir()) if p.is_file()}
    asyncio.run(_serve_forever(args, files))


if __name__ == "__main__":
    main()
