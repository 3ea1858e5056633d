"""Helpers for the hostile-input suite: a temp tree with a user's files outside the roots we
hand modelhaul, a snapshot of the whole tree to prove nothing outside them changed, and a
manager run to the end of one task."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from conftest import PYTHON, python_env
from managerkit import HELPERS, manager_settings

from downloader import DownloadManager, Settings
from downloader.testing.hostile import VICTIM
from storage import TaskRecord, TaskState

Snapshot = dict[str, tuple[str, int, str]]


@dataclass(frozen=True)
class Roots:
    """``base`` holds the roots modelhaul may write (``home``, ``dest``, ``hf``, ``ollama``)
    and, beside them, a user's files it must never touch (``outside/``, ``base/x``,
    ``base/tmp/x``, ``base/abs``)."""

    base: Path

    @property
    def home(self) -> Path:
        return self.base / "home"

    @property
    def dest(self) -> Path:
        return self.base / "dest"

    @property
    def hf(self) -> Path:
        return self.base / "hf"

    @property
    def ollama(self) -> Path:
        return self.base / "ollama"

    @property
    def allowed(self) -> tuple[Path, ...]:
        return (self.home, self.dest, self.hf, self.ollama)

    def settings(self, **overrides) -> Settings:
        values = {"hf_cache": self.hf, "ollama_models": self.ollama, "downloads": self.dest}
        return manager_settings(self.home, **(values | overrides))


def make_roots(base: Path) -> Roots:
    """Create the roots and the user's files a hostile server would love to reach."""
    roots = Roots(base)
    for folder in roots.allowed:
        folder.mkdir(parents=True, exist_ok=True)
    for name in (VICTIM, f"{VICTIM}.part", "x", "x.part", "tmp/x", "abs/x", "dest/../x2"):
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"the user's own {name}\n".encode())
    return roots


def snapshot(base: Path) -> Snapshot:
    """Every entry under ``base``: kind, size, and content digest (or link target)."""
    out: Snapshot = {}
    for folder, dirs, files in os.walk(base):
        for name in dirs + files:
            path = Path(folder, name)
            rel = path.relative_to(base).as_posix()
            if path.is_symlink():
                out[rel] = ("link", 0, os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir", 0, "")
            else:
                data = path.read_bytes()
                out[rel] = ("file", len(data), hashlib.sha256(data).hexdigest())
    return out


def outside(roots: Roots, snap: Snapshot) -> Snapshot:
    """The part of a snapshot that lies outside every allowed root."""
    names = [r.relative_to(roots.base).as_posix() for r in roots.allowed]
    return {
        k: v for k, v in snap.items() if not any(k == n or k.startswith(n + "/") for n in names)
    }


def assert_untouched(roots: Roots, before: Snapshot) -> None:
    """Nothing outside the roots was created, changed or deleted."""
    after = outside(roots, snapshot(roots.base))
    was = outside(roots, before)
    assert after == was, (
        f"outside the roots: created {sorted(after.keys() - was.keys())}, "
        f"deleted {sorted(was.keys() - after.keys())}, "
        f"changed {sorted(k for k in after.keys() & was.keys() if after[k] != was[k])}"
    )


async def run_one(
    settings: Settings, spec: str, timeout: float = 60.0, **options
) -> tuple[TaskRecord | None, str]:
    """Add ``spec`` to a manager and wait for its task to end; returns the task (None when
    ``add`` refused it) and the error message (of the refusal, or of the task)."""
    async with DownloadManager(settings) as manager:
        try:
            task = await manager.add(spec, **options)
        except Exception as e:  # the refusal is the answer a test looks at
            return None, f"{type(e).__name__}: {e}"
        async with asyncio.timeout(timeout):
            task = await manager.wait(task.id)
        return task, task.error or ""


def failed(task: TaskRecord | None) -> bool:
    return task is not None and task.state is TaskState.FAILED


def cli(home: Path, *args: str, timeout: float = 120.0, **env: str):
    """Run ``modelhaul ARGS --home HOME`` to its end; returns (code, stdout, stderr, peak RSS
    in bytes of that process alone). A run past ``timeout`` fails the test: it hung."""
    fd, name = tempfile.mkstemp(prefix="modelhaul-rss-")  # not in the tree a test lists
    os.close(fd)
    rss_file = Path(name)
    proc = subprocess.Popen(
        [PYTHON, str(HELPERS / "peak_rss.py"), *args, "--home", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=python_env(MODELHAUL_TEST_RSS_FILE=str(rss_file), **env),
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"modelhaul {' '.join(args)} did not end in {timeout} s: {err}"
        ) from None
    text = rss_file.read_text().strip()
    peak = int(text) if text else 0
    rss_file.unlink(missing_ok=True)
    return proc.returncode, out, err, peak
