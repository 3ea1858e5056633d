"""Who runs a task: this process's identity, and whether another task owner is gone.

A lease names a host, a pid and the process's start time. On the same host a dead pid, or a
live pid with another start time (the pid was reused), means the owner is gone *now*: the
next process takes the task over at once. Across hosts only a stale heartbeat can tell.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import time
from pathlib import Path

from storage import Lease, TaskRecord


@functools.cache
def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def process_start_time(pid: int) -> float | None:
    """When ``pid`` started (UNIX seconds, to 1/100 s), from /proc; None where unknown."""
    boot = _boot_time()
    if boot is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[19])  # field 22 of the whole line: starttime in clock ticks
    return round(boot + ticks / os.sysconf("SC_CLK_TCK"), 2)


def this_process() -> Lease:
    """The lease identity of the running process."""
    started = process_start_time(os.getpid())
    if started is None:  # no /proc (macOS, Windows): our own start is close enough
        started = round(time.time(), 2)
    return Lease(host=socket.gethostname(), pid=os.getpid(), started=started)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


def owner_gone(task: TaskRecord, *, stale_after: float, now: float | None = None) -> bool:
    """Whether the process (or, within this process, the manager) holding ``task`` can no
    longer be running it."""
    lease = task.lease
    if lease is None:
        return True
    now = time.time() if now is None else now
    if lease.same_process(this_process()):
        # Another manager of this very process: alive as long as it keeps its heartbeat.
        return task.heartbeat_at is None or now - task.heartbeat_at > stale_after
    if lease.host == this_process().host:
        if process_gone(lease):
            return True
        if sys.platform != "linux" and task.heartbeat_at is not None:
            return now - task.heartbeat_at > stale_after  # pid alone cannot prove it
        return False
    return task.heartbeat_at is None or now - task.heartbeat_at > stale_after


def process_gone(lease: Lease) -> bool:
    """Whether the process ``lease`` names, on this host, has certainly ended (its pid is
    free, or now belongs to a process started at another time)."""
    if lease.host != this_process().host:
        return False  # another machine's: no way to know from here
    if not pid_alive(lease.pid):
        return True
    started = process_start_time(lease.pid)
    return started is not None and abs(started - lease.started) > 0.05
