"""Helpers for CLI tests: the real ``modelhaul`` console script in child processes."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import python_env

from storage import Ledger, TaskRecord, TaskState, open_ledger

MODELHAUL = str(Path(sys.executable).parent / "modelhaul")


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = python_env(MODELHAUL_HOME=str(home))
    # A ledger URL of ours must not leak in, but a test may name one (a PostgreSQL ledger).
    env.pop("MODELHAUL_LEDGER", None)
    env.update(extra)
    return env


async def start(home: Path, *args: str, **env: str) -> asyncio.subprocess.Process:
    """``modelhaul ARGS`` running (the event loop stays free for the origins)."""
    return await asyncio.create_subprocess_exec(
        MODELHAUL,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(home, **env),
    )


async def finish(proc: asyncio.subprocess.Process, timeout: float = 120) -> Result:
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def run(home: Path, *args: str, timeout: float = 120, **env: str) -> Result:
    """``modelhaul ARGS`` to the end."""
    return await finish(await start(home, *args, **env), timeout)


async def wait_for_task(
    home: Path, check, *, timeout: float = 60, task_id: int | None = None
) -> TaskRecord:
    """Poll the ledger (the real SQLite file) until a task satisfies ``check``."""
    ledger: Ledger = await open_ledger(home / "ledger.db")
    try:
        async with asyncio.timeout(timeout):
            while True:
                tasks = await ledger.tasks.list()
                for task in tasks:
                    if (task_id is None or task.id == task_id) and check(task):
                        return task
                await asyncio.sleep(0.05)
    finally:
        await ledger.close()


async def ledger_tasks(home: Path) -> list[TaskRecord]:
    ledger = await open_ledger(home / "ledger.db")
    try:
        return await ledger.tasks.list()
    finally:
        await ledger.close()


async def durable_chunk_bytes(home: Path, task_id: int) -> int:
    ledger = await open_ledger(home / "ledger.db")
    try:
        total = 0
        for f in await ledger.files.of_task(task_id):
            total += sum(c.done for c in await ledger.files.chunks(f.id))
        return total
    finally:
        await ledger.close()


def downloading(task: TaskRecord, at_least: int = 1) -> bool:
    return task.state is TaskState.DOWNLOADING and task.downloaded_bytes >= at_least
