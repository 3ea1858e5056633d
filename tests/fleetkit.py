"""A fleet on one machine: real `modelhaul worker` processes sharing one ledger (a SQLite
file or a PostgreSQL URL), each leaving from its own loopback address
(MODELHAUL_LOCAL_ADDRESS) so that the origin's log says which worker asked for what."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from conftest import python_env

from downloader.testing.origin import RequestLog

MODELHAUL = str(Path(sys.executable).parent / "modelhaul")


@dataclass
class Worker:
    """One `modelhaul worker` process and the address its requests come from."""

    number: int
    address: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def freeze(self) -> None:
        """SIGSTOP: the process holds its leases and does nothing (a VM paused, a laptop
        lid closed) until ``thaw``."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Fleet:
    """Workers of one ledger; ``env`` is what a fourth process (a `pause`) runs with."""

    ledger: str
    home: Path
    workers: list[Worker] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return python_env(MODELHAUL_HOME=str(self.home), MODELHAUL_LEDGER=self.ledger, **extra)

    def start(self, count: int, *, max_tasks: int = 4, connections: int = 4) -> None:
        for _ in range(count):
            number = len(self.workers)
            address = f"127.0.0.{20 + number}"
            # Its log goes to a file: a pipe nobody reads fills up and blocks the worker.
            self.home.mkdir(parents=True, exist_ok=True)
            log = (self.home / f"worker{number}.log").open("wb")
            process = subprocess.Popen(
                [MODELHAUL, "worker", "--max-tasks", str(max_tasks)],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=self.env(
                    MODELHAUL_LOCAL_ADDRESS=address,
                    MODELHAUL_CONNECTIONS=str(connections),
                    MODELHAUL_STALL_TIMEOUT="5",
                ),
            )
            log.close()  # the child has its own copy
            self.workers.append(Worker(number, address, process))

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    async def run(self, *args: str, timeout: float = 60) -> tuple[int, str, str]:
        """`modelhaul ARGS --ledger URL` as another process of the fleet (a pause from
        anywhere): the workers have the ledger from MODELHAUL_LEDGER, this one by option."""
        env = self.env()
        del env["MODELHAUL_LEDGER"]
        proc = await asyncio.create_subprocess_exec(
            MODELHAUL,
            *args,
            "--ledger",
            self.ledger,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()


def overlapping_writers(log: Iterable[RequestLog]) -> dict[str, list[str]]:
    """Files asked for by two clients at overlapping times: each client's requests of a
    file span [first, last]; two such spans of one file from two clients must not meet."""
    spans: dict[str, dict[str, list[float]]] = {}
    for r in log:
        if r.method != "GET" or r.range is None:
            continue
        name = r.path.rsplit("/", 1)[-1]
        first_last = spans.setdefault(name, {}).setdefault(r.client, [r.at, r.at])
        first_last[0], first_last[1] = min(first_last[0], r.at), max(first_last[1], r.at)
    clash: dict[str, list[str]] = {}
    for name, by_client in spans.items():
        ordered = sorted(by_client.items(), key=lambda item: item[1][0])
        for (a, (_, a_end)), (b, (b_start, _)) in itertools.pairwise(ordered):
            if b_start < a_end:
                clash.setdefault(name, []).append(f"{a} until {a_end:.3f}, {b} from {b_start:.3f}")
    return clash


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
