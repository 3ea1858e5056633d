"""``modelhaul demo``: the whole story offline, in about ten seconds.

It starts the embedded origin (a generated GGUF behind a signed redirect) and hub (a
sharded safetensors repo on its CDN), both throttled and injecting connection resets and
503s with Retry-After; queues both downloads; runs them in a worker *process*, kills that
process with SIGKILL partway, starts another that resumes from the ledger; verifies every
byte, and shows that ``huggingface_hub`` finds the repo in its own cache.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from downloader.cli import exitcodes
from downloader.cli.display import Display
from downloader.cli.output import Output
from downloader.durable import sha256_of
from downloader.manager import DownloadManager, Task
from downloader.progress import format_bytes
from downloader.settings import MiB, Settings
from downloader.testing.hub import Hub, repo_files
from downloader.testing.modelfiles import write_gguf, write_sharded_safetensors
from downloader.testing.origin import Fault, FaultKind, Origin
from downloader.verify import verify_task
from storage import FileRecord, FileState, TaskState

GGUF = "demo-1b.Q8_0.gguf"
REPO = "modelhaul-demo/tiny-llama"
KILL_AT = 0.4  # of all bytes, as durable in the ledger


async def run_demo(args: argparse.Namespace, out: Output) -> int:
    """Run the demonstration in a temporary folder (kept with ``--keep``)."""
    workdir = Path(tempfile.mkdtemp(prefix="modelhaul-demo-"))
    try:
        return await _Demo(workdir, args.size, out).run()
    finally:
        if args.keep:
            out.say(f"kept everything in {workdir}")
        else:
            await asyncio.to_thread(shutil.rmtree, workdir, True)


class _Demo:
    def __init__(self, workdir: Path, size: int, out: Output) -> None:
        self.workdir = workdir
        self.size = size
        self.out = out
        # About six seconds of downloading over 16 connections, whatever the size.
        self.throttle = max(64 * 1024, size // 96)
        self.origin = Origin(throttle=self.throttle, workdir=workdir / "origin")
        self.hub = Hub(workdir / "hub", cdn_throttle=self.throttle)
        self.faults: list[tuple[Fault, int]] = []
        self.settings = Settings.from_env(
            {},
            home=workdir / "home",
            downloads=workdir / "models",
            hf_cache=workdir / "hf-cache",
        )

    async def run(self) -> int:
        out = self.out
        out.say(
            "[bold]modelhaul demo[/bold]: a local origin and hub that reset connections and "
            "answer 503, a worker killed with SIGKILL partway, a resume, a verification."
        )
        sources = await asyncio.to_thread(self._make_files)
        await self.origin.start()
        await self.hub.start()
        self.settings = self.settings.with_(hf_endpoint=self.hub.endpoint)
        self._inject()
        try:
            return await self._download(sources)
        finally:
            await self.origin.stop()
            await self.hub.stop()

    def _make_files(self) -> dict[str, Path]:
        """The files to serve; returns origin-side name → source file."""
        (self.workdir / "source").mkdir(parents=True, exist_ok=True)
        gguf = write_gguf(self.workdir / "source" / GGUF, size=self.size, name="demo-1b")
        self.origin.put(GGUF, gguf)
        repo = self.workdir / "source" / "tiny-llama"
        write_sharded_safetensors(repo, shards=3, shard_size=max(2 * MiB, self.size // 8))
        self.hub.add_repo(REPO, repo_files(repo))
        sources = {GGUF: gguf}
        for path in repo_files(repo):
            entry = self.hub.file(REPO, path)
            sources[entry.lfs_sha256 or path] = entry.source
        return sources

    def _inject(self) -> None:
        rules = [
            (self.origin, Fault(FaultKind.RESET, times=3, after=4, at_byte=256 * 1024)),
            (self.origin, Fault(FaultKind.STATUS, status=503, retry_after=1, times=2, after=9)),
            (self.hub.cdn, Fault(FaultKind.RESET, times=2, after=2, at_byte=128 * 1024)),
            (self.hub.cdn, Fault(FaultKind.STATUS, status=503, retry_after=1, times=1, after=5)),
        ]
        for server, fault in rules:
            server.inject(fault)
            self.faults.append((fault, fault.times))

    def _served(self) -> int:
        return self.origin.served + self.hub.cdn.served

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            MODELHAUL_HOME=str(self.settings.home),
            MODELHAUL_DOWNLOADS=str(self.settings.download_dir),
            HF_ENDPOINT=self.hub.endpoint,
            HF_HUB_CACHE=str(self.settings.hf_cache_dir),
        )
        env.pop("MODELHAUL_LEDGER", None)
        return env

    async def _worker(self) -> asyncio.subprocess.Process:
        # The child gets its own descriptor; ours closes once it is spawned.
        log = await asyncio.to_thread(open, self.workdir / "worker.log", "ab")
        try:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "downloader",
                "worker",
                "--once",
                env=self._env(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        finally:
            log.close()

    async def _download(self, sources: dict[str, Path]) -> int:
        out = self.out
        began = time.monotonic()
        async with DownloadManager(self.settings, autostart=False) as manager:
            tasks = await manager.add_many([self.origin.url(GGUF, signed=True), f"hf://{REPO}"])
            ids = [t.id for t in tasks]
            out.say(
                f"queued task {ids[0]} (a {format_bytes(self.size)} GGUF behind a signed "
                f"redirect) and task {ids[1]} ({REPO}, sharded safetensors); "
                f"servers send {format_bytes(self.throttle)}/s per connection"
            )
            shown = asyncio.Event()
            display = asyncio.create_task(Display(manager, ids, out).run(shown))
            try:
                worker = await self._worker()
                out.say(f"started worker process {worker.pid}")
                crash = await self._kill_partway(manager, ids, worker)
                worker = await self._worker()
                out.say(f"started worker process {worker.pid}: it resumes from the ledger")
                code = await worker.wait()
            finally:
                shown.set()
                await display
            finals = [await manager.get(i) for i in ids]
            if code != 0 or any(t.state is not TaskState.COMPLETED for t in finals):
                for t in finals:
                    out.error(f"task {t.id} is {t.state.value}: {t.error or ''}")
                out.error(f"the worker exited {code}; its log: {self.workdir / 'worker.log'}")
                return exitcodes.FAILED
            return await self._summarize(manager, finals, sources, crash, began)

    async def _kill_partway(
        self, manager: DownloadManager, ids: list[int], worker: asyncio.subprocess.Process
    ) -> dict[str, int] | None:
        """SIGKILL the worker once KILL_AT of the bytes are durable; returns the durable bytes
        of each file then (None: the worker finished first)."""
        while worker.returncode is None:
            tasks = [await manager.get(i) for i in ids]
            total = sum(t.total_bytes or 0 for t in tasks)
            done = sum(t.downloaded_bytes for t in tasks)
            if all(t.total_bytes for t in tasks) and done >= KILL_AT * total:
                worker.send_signal(signal.SIGKILL)
                await worker.wait()  # reaped: its pid is really gone
                durable = await self._durable(manager, tasks)
                self.out.say(
                    f"[red]killed worker {worker.pid} with SIGKILL[/red] at "
                    f"{format_bytes(done)} of {format_bytes(total)} (the ledger's durable "
                    "bytes: nothing after its last checkpoint counts)"
                )
                return durable
            await asyncio.sleep(0.05)
        return None

    def _name(self, task: Task, f: FileRecord) -> str:
        """The file's name on its server (the CDN names LFS files by their SHA-256)."""
        if task.provider == "url":
            return GGUF
        return self.hub.file(REPO, f.relpath).lfs_sha256 or f.relpath

    async def _files(
        self, manager: DownloadManager, tasks: list[Task]
    ) -> list[tuple[str, FileRecord]]:
        return [(self._name(t, f), f) for t in tasks for f in await manager.files(t.id)]

    async def _durable(self, manager: DownloadManager, tasks: list[Task]) -> dict[str, int]:
        """Durable bytes per server-side name."""
        durable = {}
        for name, f in await self._files(manager, tasks):
            if f.state is FileState.COMPLETED:
                durable[name] = f.size or 0
            else:
                chunks = (await manager.chunks(f.task_id))[f.id]
                durable[name] = sum(c.done for c in chunks)
        return durable

    async def _summarize(
        self,
        manager: DownloadManager,
        finals: list[Task],
        sources: dict[str, Path],
        crash: dict[str, int] | None,
        began: float,
    ) -> int:
        out = self.out
        elapsed = time.monotonic() - began
        files = await self._files(manager, finals)
        checks = [c for t in finals for c in await verify_task(manager, t.id)]
        pairs = [(Path(f.local_path), sources[name]) for name, f in files]
        same = await asyncio.to_thread(lambda: all(sha256_of(a) == sha256_of(b) for a, b in pairs))
        cached = await asyncio.to_thread(self._hf_sees_repo)
        total = sum(t.total_bytes or 0 for t in finals)
        fired = sum(before - max(fault.times, 0) for fault, before in self.faults)
        ok = same and all(c.ok for c in checks)
        out.say("")
        out.say("[bold]summary[/bold]")
        out.say(f"  downloaded      {format_bytes(total)} in {len(files)} files, {elapsed:.1f} s")
        killed = ", and a SIGKILL of the worker" if crash else ""
        out.say(f"  faults          {fired} connection resets and 503s survived{killed}")
        if crash is not None:
            large = [(name, f) for name, f in files if name == GGUF or len(name) == 64]
            kept = sum(crash.get(name, 0) for name, _ in large)
            twice = max(0, self._served() - sum(f.size or 0 for _, f in large))
            out.say(
                f"  after the kill  resumed from the {format_bytes(kept)} durable in the ledger; "
                f"{format_bytes(twice)} were fetched twice (received after the last checkpoint "
                "before the kill, or cut off by a reset)"
            )
        else:
            out.say(
                "  after the kill  nothing to resume: the downloads beat the kill (raise --size)"
            )
        for c in checks:
            verdict = "[green]ok[/green]" if c.ok else f"[red]BAD[/red] {c.problem}"
            out.say(f"  verified        {verdict}  {c.path}")
        out.say(
            "  SHA-256         "
            + ("every file matches its source" if same else "[red]MISMATCH[/red]")
        )
        out.say(f"  hf cache        {cached}")
        out.say(f"  ledger          {self.settings.ledger_target}")
        return exitcodes.OK if ok else exitcodes.FAILED

    def _hf_sees_repo(self) -> str:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir(self.settings.hf_cache_dir)
        for repo in info.repos:
            if repo.repo_id == REPO:
                return (
                    f"huggingface_hub finds {REPO} in its cache: {repo.nb_files} files, "
                    f"{format_bytes(repo.size_on_disk)}"
                )
        return f"huggingface_hub does NOT find {REPO} in {self.settings.hf_cache_dir}"
