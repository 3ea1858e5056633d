"""The task state machine: the one table of legal transitions.

Every state change in modelhaul is checked against ``TRANSITIONS`` by
``storage.moves.move``; nothing else decides what may follow what.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class TaskState(enum.StrEnum):
    """Where a task is in its life. Stored in the ledger by value."""

    PENDING = "pending"
    DOWNLOADING = "downloading"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.PENDING: frozenset({TaskState.DOWNLOADING, TaskState.PAUSED, TaskState.CANCELLED}),
    # DOWNLOADING -> PENDING is the requeue of a task whose runner died.
    TaskState.DOWNLOADING: frozenset(
        {
            TaskState.PAUSED,
            TaskState.COMPLETED,
            TaskState.FAILED,
            TaskState.CANCELLED,
            TaskState.PENDING,
        }
    ),
    # Resume and retry both queue the task again rather than start it in place, so the
    # scheduler alone decides when it runs.
    TaskState.PAUSED: frozenset({TaskState.PENDING, TaskState.CANCELLED}),
    TaskState.FAILED: frozenset({TaskState.PENDING, TaskState.CANCELLED}),
    TaskState.COMPLETED: frozenset(),
    TaskState.CANCELLED: frozenset(),
}

# The sets of states the code asks about, each named for what it means. Nowhere else
# lists states by hand.

# Nothing can follow: completed or cancelled.
FINAL_STATES: frozenset[TaskState] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
# Queued, running or paused: it will write its files again, so they are held (never evicted
# or deleted), and it counts as a download under way.
UNDERWAY: frozenset[TaskState] = frozenset(
    {TaskState.PENDING, TaskState.DOWNLOADING, TaskState.PAUSED}
)
# Stopped and able to go on: resume and retry queue these again.
RESUMABLE: frozenset[TaskState] = frozenset({TaskState.PAUSED, TaskState.FAILED})
# Nothing runs it, and nothing will until someone acts: a progress stream ends here.
AT_REST: frozenset[TaskState] = FINAL_STATES | RESUMABLE
# Still stands for its spec and destination: asking for the same download again finds it.
STANDING: frozenset[TaskState] = frozenset(TaskState) - {TaskState.CANCELLED}
# What a new task may start as.
NEW_STATES: frozenset[TaskState] = frozenset({TaskState.PENDING, TaskState.PAUSED})


def states_of(
    value: TaskState | str | Iterable[TaskState | str] | None,
) -> list[TaskState] | None:
    """A state, a state's name, or several of them, as states (None stays None: all)."""
    if value is None:
        return None
    items = [value] if isinstance(value, TaskState | str) else list(value)
    return [TaskState(s) for s in items]


def is_legal(current: TaskState, requested: TaskState) -> bool:
    """True when the table allows ``current -> requested``."""
    return requested in TRANSITIONS[current]


def sources_of(requested: TaskState) -> frozenset[TaskState]:
    """The states from which ``requested`` may be reached."""
    return frozenset(s for s, nxt in TRANSITIONS.items() if requested in nxt)
