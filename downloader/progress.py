"""Progress as users see it: AbstractCore's ``DownloadProgress``/``DownloadStatus`` with the
speed, ETA and file counts model managers show, plus the task id and its ledger state."""

from __future__ import annotations

import collections
import enum
import time
from dataclasses import asdict, dataclass
from typing import Any

from storage import TaskState


class DownloadStatus(enum.StrEnum):
    """AbstractCore's statuses (the first five), and the two a paused or cancelled task ends on."""

    STARTING = "starting"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    COMPLETE = "complete"
    ERROR = "error"
    PAUSED = "paused"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """No more progress follows this one."""
        return self in (self.COMPLETE, self.ERROR, self.PAUSED, self.CANCELLED)


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    """One progress report of one task."""

    status: DownloadStatus
    message: str
    percent: float | None = None
    downloaded_bytes: int | None = None
    total_bytes: int | None = None
    bytes_per_second: float = 0.0
    formatted_speed: str | None = None
    eta_seconds: float | None = None
    formatted_eta: str | None = None
    current_file: str | None = None
    files_completed: int = 0
    total_files: int = 0
    task_id: int | None = None
    state: TaskState | None = None
    at: float = 0.0
    note: str | None = None  # what to know now, e.g. "server asked to wait 120 s (HTTP 503)"

    @property
    def fraction_completed(self) -> float:
        """0.0 … 1.0 (as model managers report it)."""
        return (self.percent or 0.0) / 100.0

    @property
    def percent_complete(self) -> int:
        """0 … 100 as an integer (as model managers report it)."""
        return int(self.percent or 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, enums as their values."""
        data = asdict(self)
        data["status"] = self.status.value
        data["state"] = self.state.value if self.state is not None else None
        return data


def report(
    status: DownloadStatus,
    message: str,
    *,
    done: int | None = None,
    total: int | None = None,
    speed: float = 0.0,
    current_file: str | None = None,
    files_completed: int = 0,
    total_files: int = 0,
    task_id: int | None = None,
    state: TaskState | None = None,
    note: str | None = None,
) -> DownloadProgress:
    """The one place a ``DownloadProgress`` is made: percent, ETA and their text forms all
    follow from the counts given, the same way for a runner, the ledger or a first report.
    A completed download reports all of its bytes."""
    if status is DownloadStatus.COMPLETE and total is not None:
        done = total
    if total:
        percent = round(100.0 * (done or 0) / total, 2)
    else:
        percent = 100.0 if status is DownloadStatus.COMPLETE else None
    eta = (total - (done or 0)) / speed if total is not None and speed > 0 else None
    return DownloadProgress(
        status=status,
        message=message,
        percent=percent,
        downloaded_bytes=done,
        total_bytes=total,
        bytes_per_second=round(speed, 1),
        formatted_speed=format_speed(speed),
        eta_seconds=round(eta, 1) if eta is not None else None,
        formatted_eta=format_eta(eta),
        current_file=current_file,
        files_completed=files_completed,
        total_files=total_files,
        task_id=task_id,
        state=state,
        at=time.time(),
        note=note,
    )


def status_of(state: TaskState) -> DownloadStatus:
    """The progress status a task in ``state`` reports."""
    return {
        TaskState.PENDING: DownloadStatus.STARTING,
        TaskState.DOWNLOADING: DownloadStatus.DOWNLOADING,
        TaskState.PAUSED: DownloadStatus.PAUSED,
        TaskState.COMPLETED: DownloadStatus.COMPLETE,
        TaskState.FAILED: DownloadStatus.ERROR,
        TaskState.CANCELLED: DownloadStatus.CANCELLED,
    }[state]


def format_bytes(n: float) -> str:
    """``1536000`` → ``"1.5 MB"`` (decimal units, as the compatible APIs show them)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def format_speed(bytes_per_second: float) -> str | None:
    """``12_500_000`` → ``"12.5 MB/s"``; None when nothing moves."""
    if bytes_per_second <= 0:
        return None
    return f"{format_bytes(bytes_per_second)}/s"


def format_eta(seconds: float | None) -> str | None:
    """``150`` → ``"2m 30s"``, ``7260`` → ``"2h 1m"``, ``42`` → ``"42s"``."""
    if seconds is None:
        return None
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    return f"{s // 3600}h {s % 3600 // 60}m"


class SpeedMeter:
    """Bytes per second over the last ``window`` seconds (not the lifetime mean), so speed
    and ETA follow the network as it is now.

    It says nothing (0) until it has something to say: bytes moving for at least
    ``settle`` seconds. Before that a rate is noise (a first read of 136 bytes after a
    connection opened promises 77 hours), and the wait before the first byte (connecting,
    a server's Retry-After) is left out, since it says nothing of the speed to come."""

    def __init__(self, window: float = 5.0, settle: float = 1.0) -> None:
        self.window = window
        self.settle = settle
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, total: int, now: float | None = None) -> None:
        """Record the running byte count ``total`` at ``now``."""
        now = time.monotonic() if now is None else now
        if len(self._samples) >= 2 and self._samples[0][1] == self._samples[1][1] == total:
            self._samples.popleft()  # nothing moved: of a wait, only its end counts
        self._samples.append((now, total))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()

    def rate(self) -> float:
        """Bytes per second across the window; 0 before bytes have moved for ``settle``
        seconds, and 0 once they stopped for a whole window."""
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        if b1 <= b0 or t1 - t0 < self.settle:
            return 0.0
        return (b1 - b0) / (t1 - t0)
