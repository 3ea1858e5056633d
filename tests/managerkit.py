"""Helpers for manager tests: settings, child processes, waiting on the ledger."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

from conftest import PYTHON, python_env

from downloader import Settings
from downloader.engine.retry import RetryPolicy
from downloader.settings import MiB
from storage import Ledger, TaskState

HELPERS = Path(__file__).parent / "helpers"


def manager_settings(home: Path, **overrides) -> Settings:
    base = {
        "home": home,
        "connections": 4,
        "min_chunk": 2 * MiB,
        "max_chunk": 8 * MiB,
        "stall_timeout": 5.0,
        "retry": RetryPolicy(attempts=6, backoff_factor=0.05, backoff_max=0.5),
    }
    base.update(overrides)
    return Settings(**base)


def child(
    home: Path, script: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start a helper script with MODELHAUL_HOME=home (and ``env``)."""
    return subprocess.Popen(
        [PYTHON, str(HELPERS / script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=python_env(MODELHAUL_HOME=str(home), **(env or {})),
    )


def control(home: Path, action: str, task_id: int) -> str:
    """Run the control helper to the end; returns the state it printed."""
    proc = child(home, "control.py", action, str(task_id))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out.strip()


async def until(ledger: Ledger, task_id: int, check, timeout: float = 60.0):
    """Poll the ledger until ``check(task)`` holds; returns the task."""
    deadline = time.monotonic() + timeout
    while True:
        task = await ledger.tasks.get(task_id)
        if check(task):
            return task
        assert time.monotonic() < deadline, f"timed out; task is {task.state}: {task}"
        await asyncio.sleep(0.05)


def settled(task) -> bool:
    return task.state in (TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED)
