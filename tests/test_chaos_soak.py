"""The chaos soak: twenty downloads through an origin that resets, truncates, answers
500/503/429, stalls, ignores ranges, changes its files and lets its signed URLs expire, while
another process pauses, resumes, retries and cancels at random and the worker is SIGKILLed
every few seconds. Then the faults stop, everything paused or failed is queued again and one
worker drains the queue. What must hold at the end:

- every task not cancelled is completed, and its file is byte-exact (SHA-256) against the
  origin's current content, with no ``.part`` beside it;
- every task's history is a legal path through ``storage.states.TRANSITIONS``;
- every file's and task's recorded bytes equal the sum of its chunks' durable bytes (and, once
  completed, the file's size);
- a task cancelled with purge has no ``.part``; nothing was written outside the test's folders;
- along the way, a task failed only when its retries ran out or the remote file changed, no
  worker logged an internal error or a traceback, the controller's calls failed only by
  racing another process, and the ledger passes SQLite's integrity checks.

The soak runs once per module (a module-scoped fixture); each test below checks one of these.
Bugs it found are pinned down by focused tests at the end.

``MODELHAUL_SOAK_SECONDS`` sets the chaos phase's length (default 80 s; the whole test takes
about two minutes). The run is planned from one seed, printed at the start; set
``MODELHAUL_SOAK_SEED`` to replay its files, faults, kill intervals and control choices
(the interleaving of real processes is never exactly the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
import signal
import sqlite3
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from clikit import MODELHAUL, cli_env
from conftest import PYTHON

from downloader import DownloadManager, Settings
from downloader.settings import MiB
from downloader.testing.origin import Fault, FaultKind, Origin
from storage import (
    TRANSITIONS,
    EventRecord,
    IllegalTransitionError,
    TaskRecord,
    TaskState,
    TransitionConflictError,
    open_ledger,
)

pytestmark = pytest.mark.slow

HELPERS = Path(__file__).parent / "helpers"
CHAOS_SECONDS = float(os.environ.get("MODELHAUL_SOAK_SECONDS") or 80)
DOWNLOADS = 20
SIZES = (1 * MiB, 24 * MiB)
THROTTLE = 384 * 1024  # bytes per second per response: a 1 MiB block takes under 3 s
CONNECTIONS = 2  # per file; with 4 tasks at once, 8 responses in flight (3 MiB/s)
MAX_TASKS = 4
SIGNED_TTL = 2.0  # seconds a signed redirect target lives
STALL_TIMEOUT = 2.0  # the worker's; the origin's long stalls outlast it, its short ones not
KILL_AFTER = (2.0, 6.0)  # a worker is SIGKILLed this many seconds into its work
MAX_CANCELS = 3
DRAIN_TIMEOUT = 300.0


# --- the plan: everything random comes from one seed ------------------------------------------


@dataclass(frozen=True)
class SoakFile:
    """One download of the soak."""

    index: int
    name: str
    size: int
    signed: bool  # reached through a redirect to an expiring signed URL


@dataclass(frozen=True)
class SoakPlan:
    """Files, fault rules and the schedule's seeds, all drawn from ``seed``."""

    seed: int
    token: str  # in every file name, to find anything of ours outside the test's folders
    files: tuple[SoakFile, ...]
    faults: tuple[Fault, ...]

    @classmethod
    def draw(cls, seed: int) -> SoakPlan:
        rng = random.Random(seed)
        token = f"soak{seed}p{os.getpid()}"
        files = tuple(
            SoakFile(i, f"{token}-{i:02d}.bin", rng.randint(*SIZES), signed=rng.random() < 0.35)
            for i in range(DOWNLOADS)
        )
        # One file flaps: it changes on every other GET, more often than a file may start
        # over in one run, so its task fails with "the remote file changed" to be retried.
        flapping = rng.choice(files).name
        flap = Fault(FaultKind.CHANGE, times=-1, probability=0.5, ranged_only=True, path=flapping)
        return cls(seed, token, files, (*fault_rules(rng), flap))

    def content(self, f: SoakFile) -> bytes:
        return random.Random(f"{self.seed}/{f.index}").randbytes(f.size)


def fault_rules(rng: random.Random) -> list[Fault]:
    """About one GET in five goes wrong, in every way the origin knows; a file changes
    (new bytes, new ETag) rarely."""

    def at() -> int:
        return rng.choice([0, 1, 4096, 64 * 1024, 300 * 1024, 900 * 1024, 1536 * 1024])

    def p(low: float, high: float) -> float:
        return round(rng.uniform(low, high), 4)

    rules = [
        Fault(FaultKind.RESET, times=-1, probability=p(0.02, 0.04), at_byte=at()),
        Fault(FaultKind.RESET, times=-1, probability=p(0.01, 0.03), at_byte=at()),
        Fault(FaultKind.TRUNCATE, times=-1, probability=p(0.02, 0.03), at_byte=at()),
        Fault(FaultKind.STATUS, times=-1, probability=p(0.01, 0.03), status=503, retry_after=1),
        Fault(FaultKind.STATUS, times=-1, probability=p(0.01, 0.02), status=503),
        Fault(
            FaultKind.STATUS,
            times=-1,
            probability=p(0.01, 0.03),
            status=429,
            retry_after=rng.choice([1, 2]),
        ),
        Fault(FaultKind.STATUS, times=-1, probability=p(0.01, 0.02), status=500),
        # Past the stall timeout (the worker gives up on the response) and within it.
        Fault(FaultKind.STALL, times=-1, probability=p(0.01, 0.02), at_byte=at(), seconds=3.0),
        Fault(FaultKind.STALL, times=-1, probability=p(0.01, 0.02), at_byte=at(), seconds=1.0),
        Fault(FaultKind.IGNORE_RANGE, times=-1, probability=p(0.005, 0.01), ranged_only=True),
        Fault(FaultKind.WRONG_RANGE, times=-1, probability=p(0.005, 0.01), ranged_only=True),
        Fault(FaultKind.CHANGE, times=-1, probability=p(0.008, 0.015), ranged_only=True),
    ]
    rng.shuffle(rules)
    return rules


class ChaosOrigin(Origin):
    """The test origin, counting every fault it injects by kind."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.injected: Counter[str] = Counter()

    def _fault_for(self, request, name):  # type: ignore[no-untyped-def]
        fault = super()._fault_for(request, name)
        if fault is not None:
            label = fault.kind.value
            if fault.kind is FaultKind.STATUS:
                label = f"{fault.status}" + (" + Retry-After" if fault.retry_after else "")
            elif fault.kind is FaultKind.STALL:
                label = f"stall {fault.seconds:g} s"
            elif fault.kind is FaultKind.CHANGE:
                label = "change" + (" of the flapping file" if fault.path else "")
            self.injected[label] += 1
        return fault

    def signed_expired(self) -> int:
        """Requests refused because their signed URL had expired."""
        return sum(1 for r in self.log if r.path.startswith("/signed/") and r.status == 403)


# --- the processes ----------------------------------------------------------------------------


@dataclass
class Figures:
    """What the soak did, for the report."""

    kills: int = 0
    workers: int = 0
    worker_exits: list[int] = field(default_factory=list)
    drain_workers: int = 0
    control: dict = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    chaos_states: Counter[str] = field(default_factory=Counter)  # when the chaos ended
    drain_timed_out: bool = False
    failures: Counter[str] = field(default_factory=Counter)  # moves to failed, by reason


@dataclass
class Soak:
    """The folders and environment of one soak run."""

    root: Path
    plan: SoakPlan
    figures: Figures = field(default_factory=Figures)
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def env(self) -> dict[str, str]:
        # HOME and TMPDIR (and each child's working folder) are in the test's folder too, so
        # anything a child writes where it should not shows up in the listing at the end.
        return cli_env(
            self.home,
            MODELHAUL_CONNECTIONS=str(CONNECTIONS),
            MODELHAUL_STALL_TIMEOUT=str(STALL_TIMEOUT),
            HOME=str(self.root / "user"),
            TMPDIR=str(self.root / "tmp"),
        )

    async def spawn(self, log_name: str, *argv: str) -> asyncio.subprocess.Process:
        with (
            (self.logs / f"{log_name}.out").open("wb") as out,
            (self.logs / f"{log_name}.err").open("wb") as err,
        ):
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self.env(),
                cwd=self.root / "tmp",
            )
        self.procs.append(proc)
        return proc

    async def run(self, log_name: str, *argv: str, timeout: float = 120) -> str:
        proc = await self.spawn(log_name, *argv)
        async with asyncio.timeout(timeout):
            code = await proc.wait()
        out = (self.logs / f"{log_name}.out").read_text()
        err = (self.logs / f"{log_name}.err").read_text()
        assert code == 0, f"{' '.join(argv)} exited {code}: {err}"
        return out

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGKILL)


async def kill_workers_until(soak: Soak, origin: Origin, deadline: float, seed: int) -> None:
    """Run a worker, SIGKILL it 2-6 s into its work, start the next, until ``deadline``
    (the last one is killed then)."""
    rng = random.Random(f"{seed}/kills")
    while time.monotonic() < deadline:
        soak.figures.workers += 1
        seen = len(origin.log)
        worker = await soak.spawn(
            f"worker-{soak.figures.workers:03d}", MODELHAUL, "worker", "--max-tasks", str(MAX_TASKS)
        )
        # The kill clock starts at the worker's first request (or after 20 s of nothing to
        # do), so that a slow start on a busy machine does not eat its whole life.
        started = time.monotonic()
        while (
            len(origin.log) == seen
            and worker.returncode is None
            and time.monotonic() - started < 20
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.05)
        life = rng.uniform(*KILL_AFTER)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(worker.wait(), max(0.0, min(life, deadline - time.monotonic())))
        if worker.returncode is None:
            worker.send_signal(signal.SIGKILL)
            soak.figures.kills += 1
            await worker.wait()
        else:
            soak.figures.worker_exits.append(worker.returncode)


# --- the invariants ---------------------------------------------------------------------------


def history_problems(task: TaskRecord, events: list[EventRecord]) -> list[str]:
    """Where ``events`` (oldest first) leave the state table. A note (from == to) records
    something that happened without a move; it must name the state the task was in."""
    if not events:
        return [f"task {task.id}: no history at all"]
    first, *rest = events
    problems = []
    if first.from_state is not None or first.to_state not in (TaskState.PENDING, TaskState.PAUSED):
        problems.append(f"task {task.id}: history starts {first.from_state}->{first.to_state}")
    state = first.to_state
    for e in rest:
        move = f"event {e.id} {e.from_state}->{e.to_state} ({e.reason!r})"
        if e.from_state is not state:
            problems.append(f"task {task.id}: {move}, but the task was {state}")
        elif e.to_state is not state and e.to_state not in TRANSITIONS[state]:
            problems.append(f"task {task.id}: {move} is not in the state table")
        state = e.to_state
    if state is not task.state:
        problems.append(f"task {task.id}: history ends in {state}, the task is {task.state}")
    return problems


def sha256_of(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 * MiB):
            sha.update(block)
    return sha.hexdigest()


def part_of(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) + ("/" if p.is_dir() else "") for p in root.rglob("*"))


@dataclass
class Verdict:
    """Problems found, by invariant, and how many individual checks ran."""

    problems: dict[str, list[str]] = field(default_factory=dict)
    checks: Counter[str] = field(default_factory=Counter)

    def check(self, invariant: str, ok: bool, problem: str) -> None:
        self.checks[invariant] += 1
        self.problems.setdefault(invariant, [])
        if not ok:
            self.problems[invariant].append(problem)

    def failed(self) -> dict[str, list[str]]:
        return {k: v for k, v in self.problems.items() if v}


async def judge(soak: Soak, origin: ChaosOrigin) -> tuple[Verdict, list[TaskRecord]]:
    """Check every invariant on the ledger and the disk; nothing here changes either."""
    v = Verdict()
    by_name = {f.name: f for f in soak.plan.files}
    async with await open_ledger(soak.home / "ledger.db") as ledger:
        tasks = sorted(await ledger.tasks.list(), key=lambda t: t.id)
        v.check("20 tasks in the ledger", len(tasks) == DOWNLOADS, f"{len(tasks)} tasks")
        for task in tasks:
            dest = Path(task.destination)
            name = dest.name
            files = await ledger.files.of_task(task.id)
            events = await ledger.tasks.events(task.id)
            for problem in history_problems(task, events) or [None]:
                v.check("history is a legal path", problem is None, str(problem))
            for e in events:
                if (e.from_state, e.to_state) == (
                    TaskState.DOWNLOADING,
                    TaskState.PENDING,
                ) and not REQUEUE.match(e.reason):
                    v.check(
                        "a running task is queued again only when its runner stops or dies",
                        False,
                        f"task {task.id}: event {e.id} downloading->pending {e.reason!r} "
                        f"by {e.actor}",
                    )
                if "internal error" in e.reason:
                    finding(v, "no internal error", f"task {task.id}: {e.reason}")
                if e.to_state is TaskState.FAILED and not EXPECTED_FAILURE.match(e.reason):
                    finding(
                        v,
                        "a task fails only when its retries run out or the remote changed",
                        f"task {task.id}: {e.reason}",
                    )
            v.check("no internal error", True, "")
            v.check("a running task is queued again only when its runner stops or dies", True, "")
            v.check("a task fails only when its retries run out or the remote changed", True, "")
            v.check("a fault inside the probe never fails a task", True, "")

            chunk_sum = 0
            for f in files:
                chunks = await ledger.files.chunks(f.id)
                durable = sum(c.done for c in chunks)
                chunk_sum += durable
                v.check(
                    "file bytes = its chunks' durable bytes",
                    f.downloaded_bytes == durable,
                    f"task {task.id} {f.relpath}: downloaded_bytes {f.downloaded_bytes}, "
                    f"chunks hold {durable} ({len(chunks)} chunks)",
                )
                if task.state is TaskState.COMPLETED:
                    v.check(
                        "completed file: bytes = size",
                        f.size == durable == f.downloaded_bytes,
                        f"task {task.id} {f.relpath}: size {f.size}, downloaded "
                        f"{f.downloaded_bytes}, chunks {durable}",
                    )
            v.check(
                "task bytes = its chunks' durable bytes",
                task.downloaded_bytes == chunk_sum,
                f"task {task.id}: downloaded_bytes {task.downloaded_bytes}, chunks hold "
                f"{chunk_sum}",
            )

            part = part_of(dest)
            purged = task.state is TaskState.CANCELLED and bool(task.options.get("purge"))
            v.check(
                "cancelled with purge: no .part",
                not (purged and part.exists()),
                f"task {task.id}: cancelled with purge, but {part} is still there",
            )
            if task.state is TaskState.CANCELLED:
                continue
            v.check(
                "not cancelled: completed",
                task.state is TaskState.COMPLETED,
                f"task {task.id} ({name}) is {task.state.value}: {task.error}",
            )
            expected = origin.content(name)
            v.check(
                "completed: task bytes = size",
                task.state is not TaskState.COMPLETED
                or task.total_bytes == task.downloaded_bytes == len(expected),
                f"task {task.id}: total {task.total_bytes}, downloaded {task.downloaded_bytes}, "
                f"file {len(expected)}",
            )
            if dest.is_file():
                same = (
                    await asyncio.to_thread(sha256_of, dest) == hashlib.sha256(expected).hexdigest()
                )
                size = dest.stat().st_size
                why = f"{size} bytes for {len(expected)}" if size != len(expected) else "digest"
                v.check(
                    "byte-exact against the origin",
                    same,
                    f"task {task.id} {name}: differs from the origin's current content ({why}; "
                    f"{'signed' if by_name[name].signed else 'plain'} URL)",
                )
            else:
                v.check("byte-exact against the origin", False, f"task {task.id}: no {dest}")
            v.check(
                "no .part beside a finished file",
                not (dest.is_file() and part.exists()),
                f"task {task.id}: {part} is beside {dest}",
            )

    # After dozens of SIGKILLs amid writes from three kinds of process, SQLite's own checks.
    with contextlib.closing(sqlite3.connect(soak.home / "ledger.db")) as db:
        integrity = [r[0] for r in db.execute("PRAGMA integrity_check")]
        dangling = db.execute("PRAGMA foreign_key_check").fetchall()
    v.check("the ledger is intact", integrity == ["ok"], f"integrity_check: {integrity}")
    v.check("the ledger is intact", not dangling, f"foreign_key_check: {dangling}")

    # Nothing outside the test's folders: the whole tree is only what the soak expects,
    # and nothing named after this run exists anywhere else in the system's temp folder.
    cancelled = {Path(t.destination).name for t in tasks if t.state is TaskState.CANCELLED}
    names = "|".join(re.escape(f.name) for f in soak.plan.files)
    allowed = [
        r"(src|origin|downloads|home|logs|user|tmp)/",
        rf"src/({names})",
        rf"origin/v\d+-({names})",
        rf"downloads/({names})",
        r"home/ledger\.db(-wal|-shm)?",
        r"logs/[\w.-]+\.(out|err)",
    ]
    for rel in listing(soak.root):
        ok = any(re.fullmatch(p, rel) for p in allowed) or (
            rel.startswith("downloads/")
            and rel.endswith(".part")
            and rel[len("downloads/") : -len(".part")] in cancelled
        )
        v.check("only expected files in the test's folder", ok, f"unexpected {rel}")
    strays = await asyncio.to_thread(find_named, Path(tempfile.gettempdir()), soak.plan.token)
    for stray in strays:
        if soak.root not in stray.parents:
            v.check("nothing of ours outside the test's folder", False, f"stray {stray}")
    v.check("nothing of ours outside the test's folder", True, "")
    return v, tasks


def find_named(top: Path, token: str) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(top, onerror=lambda e: None):
        found += [Path(folder, n) for n in dirs + files if token in n]
    return found


def worker_log_problems(logs: Path) -> list[str]:
    """Tracebacks, never-retrieved task exceptions and internal errors in any worker's
    output: one excerpt per log record that has one."""
    problems = []
    for path in sorted(logs.glob("worker-*.err")) + sorted(logs.glob("drain-*.err")):
        text = path.read_text(errors="replace")
        for record in LOG_RECORD.split(text):
            if any(m in record for m in ("Traceback", "never retrieved", "internal error")):
                problems.append(f"{path.name}: {record.strip()[:1500]}")
    return problems


# A log record starts a line with its level and logger ("ERROR downloader.x: ..."), or is
# asyncio's "Task exception was never retrieved".
LOG_RECORD = re.compile(r"\n(?=[A-Z]+ [\w.]+: |Task exception was never retrieved)")

# The signature of the probe bug (see the focused tests at the end): the probe's one-byte body
# cut by a reset, or stalled past the stall timeout.
PROBE_BUG = re.compile(
    r"received 0 of 1 bytes|^Timeout on reading data from socket$|downloader/engine/probe\.py"
)
EXPECTED_FAILURE = re.compile(r"^(gave up on |the remote file changed)")
# downloading -> pending is the requeue of a task whose runner died or stopped, nothing else.
REQUEUE = re.compile(r"^(requeued from |interrupted: the process running it stopped)")


def finding(verdict: Verdict, invariant: str, problem: str) -> None:
    """A problem for ``invariant``, or for the probe bug's own test when it is that bug."""
    if PROBE_BUG.search(problem):
        verdict.check("a fault inside the probe never fails a task", False, problem)
    else:
        verdict.check(invariant, False, problem)


# --- the report -------------------------------------------------------------------------------


def report(
    soak: Soak, origin: ChaosOrigin, tasks: list[TaskRecord], verdict: Verdict | None
) -> str:
    plan, fig = soak.plan, soak.figures
    total = sum(f.size for f in plan.files)
    completed = [t for t in tasks if t.state is TaskState.COMPLETED]
    cancelled = [t for t in tasks if t.state is TaskState.CANCELLED]
    needed = sum(t.total_bytes or 0 for t in completed) + sum(t.downloaded_bytes for t in cancelled)
    lines = [
        f"chaos soak, seed {plan.seed} (MODELHAUL_SOAK_SEED={plan.seed} to replay)",
        f"  downloads       {len(plan.files)} files, {total / MiB:.1f} MiB "
        f"({sum(f.signed for f in plan.files)} through signed URLs with a {SIGNED_TTL:g} s TTL); "
        f"{len(completed)} completed, {len(cancelled)} cancelled "
        f"({sum(bool(t.options.get('purge')) for t in cancelled)} purged)",
        "  faults          "
        + ", ".join(f"{k} {n}" for k, n in sorted(origin.injected.items()))
        + f"; signed URLs expired {origin.signed_expired()}"
        + f" (total {sum(origin.injected.values())} of {sum(r.method == 'GET' for r in origin.log)}"
        " GETs)",
        f"  workers         {fig.workers} started, {fig.kills} SIGKILLed, "
        f"exited by themselves {fig.worker_exits or 'never'}; drain: {fig.drain_workers} "
        "worker --once",
        "  control         "
        + "; ".join(
            f"{kind} " + ", ".join(f"{o} {n}" for o, n in sorted(outcomes.items()))
            for kind, outcomes in sorted(fig.control.get("actions", {}).items())
        )
        + f"; errors {len(fig.control.get('errors', []))}; blind calls accepted: "
        + (
            ", ".join(
                f"{n} x {kind} of a {frm} task ({frm}->{to})"
                for (kind, frm, to), n in Counter(
                    (kind, frm, to) for kind, _, frm, to in fig.control.get("blind", [])
                ).most_common()
            )
            or "none"
        ),
        f"  at chaos end    {dict(fig.chaos_states)}"
        + (f"; the drain timed out after {DRAIN_TIMEOUT:g} s" if fig.drain_timed_out else ""),
        "  failures        "
        + ("; ".join(f"{n} x {r}" for r, n in fig.failures.most_common()) or "none"),
        f"  bytes           served {origin.served / MiB:.1f} MiB for {needed / MiB:.1f} MiB "
        f"kept: {(origin.served - needed) / MiB:.1f} MiB fetched again "
        f"({100 * (origin.served - needed) / max(1, needed):.0f}%)",
        "  time            " + ", ".join(f"{k} {s:.0f} s" for k, s in fig.phases.items()),
    ]
    if verdict is not None:
        lines.append(
            f"  invariants      {sum(verdict.checks.values())} checks: "
            + ", ".join(f"{k} {n}" for k, n in verdict.checks.items())
        )
    return "\n".join(lines)


# --- the soak ---------------------------------------------------------------------------------


def soak_seed() -> int:
    raw = os.environ.get("MODELHAUL_SOAK_SEED")
    return int(raw) if raw else random.SystemRandom().randrange(1, 1_000_000)


@dataclass
class SoakRun:
    """One soak's outcome: what it did and what the invariants found."""

    plan: SoakPlan
    figures: Figures
    verdict: Verdict
    report: str

    def problems(self, *invariants: str) -> list[str]:
        for name in invariants:
            assert self.verdict.checks[name] > 0, f"'{name}' was never checked"
        return [f"{name}: {p}" for name in invariants for p in self.verdict.problems.get(name, [])]


async def run_soak(root: Path, plan: SoakPlan) -> SoakRun:
    """Set up, queue, chaos, drain, judge."""
    began = time.monotonic()
    soak = Soak(root, plan)
    for folder in ("src", "origin", "downloads", "home", "logs", "user", "tmp"):
        (root / folder).mkdir()
    sources = {}
    for f in plan.files:
        sources[f.name] = root / "src" / f.name
        await asyncio.to_thread(sources[f.name].write_bytes, plan.content(f))
    origin = ChaosOrigin(
        sources, throttle=THROTTLE, signed_ttl=SIGNED_TTL, seed=plan.seed, workdir=root / "origin"
    )
    tasks: list[TaskRecord] = []
    verdict = Verdict()
    try:
        async with origin:
            urls = [origin.url(f.name, signed=f.signed) for f in plan.files]
            queue = ["get", "--detach", "--no-check", "--json", "--dest", f"{soak.downloads}/"]
            out = await soak.run("queue", MODELHAUL, *queue, *urls)
            ids = [item["id"] for item in json.loads(out)]
            assert len(ids) == DOWNLOADS, out
            soak.figures.phases["setup"] = time.monotonic() - began

            # Chaos: faults on, a controller at work, the worker killed every few seconds.
            origin.inject(*plan.faults)
            chaos_began = time.monotonic()
            controller = await soak.spawn(
                "controller",
                PYTHON,
                str(HELPERS / "chaos_controller.py"),
                str(plan.seed),
                f"{time.time() + CHAOS_SECONDS:.3f}",
                str(MAX_CANCELS),
                *map(str, ids),
            )
            await kill_workers_until(soak, origin, chaos_began + CHAOS_SECONDS, plan.seed)
            async with asyncio.timeout(60):
                code = await controller.wait()
            assert code == 0, (soak.logs / "controller.err").read_text()
            soak.figures.control = json.loads((soak.logs / "controller.out").read_text())
            soak.figures.phases["chaos"] = time.monotonic() - chaos_began
            soak.figures.chaos_states = await states_now(soak.home)

            # The drain: no faults, full speed, everything paused or failed queued again,
            # one worker at a time with --once until nothing is pending.
            drain_began = time.monotonic()
            origin.clear_faults()
            origin.throttle = None
            async with DownloadManager(Settings(home=soak.home), autostart=False) as manager:
                for task in await manager.list():
                    if task.state is TaskState.PAUSED:
                        await manager.resume(task.id)
                    elif task.state is TaskState.FAILED:
                        await manager.retry(task.id)
            try:
                async with asyncio.timeout(DRAIN_TIMEOUT):
                    while await states_now(soak.home, TaskState.PENDING, TaskState.DOWNLOADING):
                        soak.figures.drain_workers += 1
                        drain = ("worker", "--once", "--max-tasks", str(MAX_TASKS))
                        name = f"drain-{soak.figures.drain_workers}"
                        await soak.run(name, MODELHAUL, *drain, timeout=DRAIN_TIMEOUT)
            except TimeoutError:
                soak.figures.drain_timed_out = True  # the invariants say what was left
            soak.figures.phases["drain"] = time.monotonic() - drain_began

            verdict, tasks = await judge(soak, origin)
            soak.figures.failures = await failure_reasons(soak.home)
            for problem in worker_log_problems(soak.logs):
                finding(verdict, "no internal error", problem)
            for error in soak.figures.control.get("errors", []):
                verdict.check("control calls fail only as typed refusals", False, error)
            verdict.check("control calls fail only as typed refusals", True, "")
            verdict.check("the chaos happened", soak.figures.kills > 0, "no worker was killed")
            verdict.check("the chaos happened", bool(origin.injected), "no fault was injected")
    finally:
        soak.kill_all()
        soak.figures.phases["total"] = time.monotonic() - began
        text = report(soak, origin, tasks, verdict)
        print(text)
    return SoakRun(plan, soak.figures, verdict, text)


async def states_now(home: Path, *states: TaskState) -> Counter[str]:
    """How many tasks are in each state (only ``states``, if given)."""
    async with await open_ledger(home / "ledger.db") as ledger:
        tasks = await ledger.tasks.list(list(states) if states else None)
    return Counter(t.state.value for t in tasks)


async def failure_reasons(home: Path) -> Counter[str]:
    """Every move to ``failed`` in the soak, by reason (numbers masked, so alike ones add up)."""
    reasons: Counter[str] = Counter()
    async with await open_ledger(home / "ledger.db") as ledger:
        for task in await ledger.tasks.list():
            for e in await ledger.tasks.events(task.id):
                if e.to_state is TaskState.FAILED and e.from_state is not TaskState.FAILED:
                    text = re.sub(r"https?://\S+", "URL", e.reason)
                    reasons[re.sub(r"\d+", "N", text)[:160]] += 1
    return reasons


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> SoakRun:
    plan = SoakPlan.draw(soak_seed())
    print(f"\nchaos soak seed {plan.seed}: MODELHAUL_SOAK_SEED={plan.seed} replays it")
    return asyncio.run(run_soak(tmp_path_factory.mktemp("soak"), plan))


def test_every_task_not_cancelled_ends_completed_and_byte_exact_against_the_origin(
    soak: SoakRun,
) -> None:
    assert not soak.problems(
        "20 tasks in the ledger", "not cancelled: completed", "byte-exact against the origin"
    )


def test_every_event_history_is_a_legal_path_through_the_state_table(soak: SoakRun) -> None:
    assert not soak.problems("history is a legal path")


def test_recorded_byte_totals_equal_the_chunk_sums_and_completed_files_their_size(
    soak: SoakRun,
) -> None:
    assert not soak.problems(
        "file bytes = its chunks' durable bytes",
        "task bytes = its chunks' durable bytes",
        "completed file: bytes = size",
        "completed: task bytes = size",
    )


def test_no_part_file_is_left_beside_a_finished_file_or_after_a_purge(soak: SoakRun) -> None:
    assert not soak.problems("no .part beside a finished file", "cancelled with purge: no .part")


def test_nothing_is_written_outside_the_test_s_folders(soak: SoakRun) -> None:
    assert not soak.problems(
        "only expected files in the test's folder", "nothing of ours outside the test's folder"
    )


def test_a_running_task_is_queued_again_only_when_its_runner_stops_or_dies(soak: SoakRun) -> None:
    assert not soak.problems("a running task is queued again only when its runner stops or dies")


def test_the_ledger_passes_sqlite_s_integrity_and_foreign_key_checks(soak: SoakRun) -> None:
    assert not soak.problems("the ledger is intact")


def test_control_calls_from_another_process_fail_only_as_typed_refusals(soak: SoakRun) -> None:
    assert not soak.problems("control calls fail only as typed refusals")


def test_the_chaos_happened(soak: SoakRun) -> None:
    assert not soak.problems("the chaos happened")


def test_no_internal_error_in_any_history_or_worker_log(soak: SoakRun) -> None:
    assert not soak.problems("no internal error")


def test_a_task_fails_only_when_its_retries_run_out_or_the_remote_changed(soak: SoakRun) -> None:
    assert not soak.problems("a task fails only when its retries run out or the remote changed")


def test_a_fault_inside_the_probe_never_fails_a_task(soak: SoakRun) -> None:
    assert not soak.problems("a fault inside the probe never fails a task")


# --- bugs the soak found, each pinned down on its own -------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault(FaultKind.RESET, at_byte=0),
        Fault(FaultKind.STALL, at_byte=0, seconds=3.0),
    ],
    ids=["reset", "stall"],
)
async def test_a_reset_or_stall_inside_the_probe_s_one_byte_is_retried_like_any_other(
    tmp_path: Path, fault: Fault
) -> None:
    data = random.Random(3).randbytes(3 * MiB)
    settings = Settings(home=tmp_path / "home", stall_timeout=1.0)
    async with Origin({"m.bin": data}, workdir=tmp_path / "origin") as origin:
        origin.inject(fault)  # only the first GET: the probe, "Range: bytes=0-0"
        async with DownloadManager(settings) as manager:
            task = await manager.add(origin.url("m.bin"), dest=tmp_path / "m.bin")
            async with asyncio.timeout(60):
                done = await manager.wait(task.id)
    assert origin.log[0].range == "bytes=0-0"
    assert done.state is TaskState.COMPLETED, done.error
    assert (tmp_path / "m.bin").read_bytes() == data


async def test_a_purge_is_done_even_when_the_worker_dies_before_it_notices_the_cancel(
    tmp_path: Path,
) -> None:
    home, dest = tmp_path / "home", tmp_path / "out" / "m.bin"
    data = random.Random(5).randbytes(16 * MiB)
    env = cli_env(home, MODELHAUL_CONNECTIONS="2")
    async with (
        Origin({"m.bin": data}, throttle=MiB, workdir=tmp_path / "origin") as origin,
        DownloadManager(Settings(home=home), autostart=False) as manager,
    ):
        task = await manager.add(origin.url("m.bin"), dest=dest)
        worker = await asyncio.create_subprocess_exec(
            MODELHAUL, "worker", env=env, stdout=asyncio.subprocess.DEVNULL
        )
        try:
            async with asyncio.timeout(60):
                while (await manager.get(task.id)).downloaded_bytes < 2 * MiB:
                    await asyncio.sleep(0.05)
            assert part_of(dest).exists()
            # Frozen, the worker cannot notice the cancel in its next poll (0.25 s): the
            # window between the cancel and its purge, held open.
            worker.send_signal(signal.SIGSTOP)
            await manager.cancel(task.id, purge=True)
            worker.send_signal(signal.SIGKILL)
            await worker.wait()
            # Whoever comes next (a worker, any manager) has every chance to finish it.
            drain = await asyncio.create_subprocess_exec(
                MODELHAUL, "worker", "--once", env=env, stdout=asyncio.subprocess.DEVNULL
            )
            async with asyncio.timeout(60):
                await drain.wait()
        finally:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
        assert (await manager.get(task.id)).state is TaskState.CANCELLED
    assert not part_of(dest).exists(), "the cancelled and purged task's .part is still there"


async def test_a_probe_answered_once_in_full_does_not_make_the_file_unresumable(
    tmp_path: Path,
) -> None:
    data = random.Random(7).randbytes(8 * MiB)
    settings = Settings(home=tmp_path / "home", connections=4)
    async with (
        Origin({"m.bin": data}, throttle=4 * MiB, workdir=tmp_path / "origin") as origin,
        DownloadManager(settings) as manager,
    ):
        origin.inject(Fault(FaultKind.IGNORE_RANGE))  # only the first GET: the probe
        task = await manager.add(origin.url("m.bin"), dest=tmp_path / "m.bin")
        async with asyncio.timeout(60):
            done = await manager.wait(task.id)
        [record] = await manager.files(task.id)
    assert (origin.log[0].range, origin.log[0].status) == ("bytes=0-0", 200)
    assert done.state is TaskState.COMPLETED, done.error
    assert (tmp_path / "m.bin").read_bytes() == data
    assert record.accept_ranges, "one ignored Range made the file a single, unresumable stream"


@pytest.mark.parametrize("action", ["resume", "retry"])
async def test_resume_or_retry_of_a_running_task_is_refused_and_changes_nothing(
    tmp_path: Path, action: str
) -> None:
    home = tmp_path / "home"
    data = random.Random(11).randbytes(16 * MiB)
    env = cli_env(home, MODELHAUL_CONNECTIONS="2")
    async with (
        Origin({"m.bin": data}, throttle=128 * 1024, workdir=tmp_path / "origin") as origin,
        DownloadManager(Settings(home=home), autostart=False) as manager,
    ):
        task = await manager.add(origin.url("m.bin"), dest=tmp_path / "m.bin")
        worker = await asyncio.create_subprocess_exec(
            MODELHAUL, "worker", env=env, stdout=asyncio.subprocess.DEVNULL
        )
        try:
            async with asyncio.timeout(60):
                while (running := await manager.get(task.id)).downloaded_bytes < MiB:
                    await asyncio.sleep(0.05)
            before = await manager.history(task.id)
            with pytest.raises((IllegalTransitionError, TransitionConflictError)):
                await getattr(manager, action)(task.id)
            after = await manager.get(task.id)
            history = await manager.history(task.id)
        finally:
            worker.kill()
            await worker.wait()
    assert after.state is TaskState.DOWNLOADING and after.lease == running.lease
    assert history == before
