"""Download one URL through the engine alone (no manager), resuming whatever the ledger
holds for it: the process that crash tests kill and benchmarks time.

    python -m downloader.testing.fetch LEDGER URL DEST CONNECTIONS [EXPECTED_SHA256]
        [--slow-seconds S]

With EXPECTED_SHA256 the file is verified against it, as a hub's published digest would be.
``--slow-seconds`` sets how long a connection may run far below the others.

Prints "started rss_kib=N" once running, then at the end
"done <sha256> fetched=<n> checked=<n> baseline_kib=<n> peak_kib=<n>".
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from downloader.engine.context import EngineContext
from downloader.engine.download import FileDownload
from downloader.engine.http import open_session
from downloader.engine.progress import FileProgress
from downloader.engine.ratelimit import TokenBucket
from downloader.settings import MiB, Settings
from storage import NewFile, NewTask, TaskState, open_ledger


def status_kib(field: str) -> int:
    """A memory figure of this process from /proc (Linux), in KiB: VmRSS now, or VmHWM,
    the peak since exec (unlike ru_maxrss, which keeps the parent's image a fork copied)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def main(
    ledger_path: str,
    url: str,
    dest: str,
    connections: int,
    expected: str | None,
    slow_seconds: float = Settings.slow_seconds,
    fixed: bool = False,
) -> None:
    settings = Settings(
        home=Path(ledger_path).parent,
        connections=connections,
        connect_timeout=10,
        slow_seconds=slow_seconds,
        adaptive_connections=not fixed,
    )
    config = settings.engine()
    async with await open_ledger(ledger_path) as ledger:
        spec = NewTask("url", url, dest)
        task = await ledger.tasks.find(spec.spec_key, list(TaskState))
        if task is None:
            [task_id] = await ledger.tasks.enqueue([spec])
            await ledger.files.add(
                task_id, [NewFile(url, Path(dest).name, dest, MiB, expected_sha256=expected)]
            )
        else:
            task_id = task.id
        [record] = await ledger.files.of_task(task_id)
        baseline = status_kib("VmRSS")
        print(f"started rss_kib={baseline}", flush=True)
        async with open_session(config) as session:
            ctx = EngineContext(session, config, TokenBucket(None))
            progress = FileProgress(record.id, record.relpath, record.size)
            done = await FileDownload(ctx, record, ledger.journal(record), progress=progress).run()
        peak = status_kib("VmHWM")
        print(
            f"done {done.sha256} fetched={progress.fetched} checked={progress.checked} "
            f"baseline_kib={baseline} peak_kib={peak}",
            flush=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Download one URL through the engine alone.")
    parser.add_argument("ledger")
    parser.add_argument("url")
    parser.add_argument("dest")
    parser.add_argument("connections", type=int)
    parser.add_argument("expected", nargs="?")
    parser.add_argument("--slow-seconds", type=float, default=Settings.slow_seconds)
    parser.add_argument(
        "--fixed", action="store_true", help="exactly CONNECTIONS: none added while they help"
    )
    a = parser.parse_args()
    asyncio.run(main(a.ledger, a.url, a.dest, a.connections, a.expected, a.slow_seconds, a.fixed))
