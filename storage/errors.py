"""Typed errors of the ledger. Each message names what was wrong and what to do."""

from __future__ import annotations

from pathlib import Path

from storage.states import FINAL_STATES, TaskState


class ModelhaulError(Exception):
    """The root of every error modelhaul raises on purpose, the ledger's included: the one
    class a user catches. It lives on the ground floor so that the ledger's errors can stand
    under it; ``downloader.errors`` hands it on."""


class LedgerError(ModelhaulError):
    """Base class of every error raised by ``storage``."""


class LedgerOpenError(LedgerError):
    """The ledger could not be opened: a bad URL, a bad file, or a folder we cannot write."""

    def __init__(self, where: str | Path, problem: str) -> None:
        self.where = str(where)
        self.problem = problem
        super().__init__(f"cannot open ledger at {self.where}: {problem}")


class LedgerUnavailableError(LedgerError):
    """The database refused to read or write (a full disk, a read-only or failing device, a
    lock held too long, a database server away). What it recorded before stays as it was.
    ``outage``: a database server that is away (restarting, unreachable), where the same
    call may work in a moment; not a local file's failure, which waiting does not mend."""

    def __init__(self, where: str, writing: bool, problem: str, *, outage: bool = False) -> None:
        self.where = where
        self.writing = writing
        self.problem = problem
        self.outage = outage
        verb = "write" if writing else "read"
        super().__init__(
            f"cannot {verb} the ledger at {where}: {problem}"
            + (
                "; what it recorded before is kept: fix that, then run the same command "
                "again to resume"
                if writing
                else ""
            )
        )


class SchemaTooNewError(LedgerOpenError):
    """The ledger was written by a newer modelhaul than this one."""

    def __init__(self, where: str | Path, revision: str) -> None:
        self.revision = revision
        super().__init__(
            where,
            f"its schema (revision {revision}) is newer than this modelhaul knows; "
            "upgrade modelhaul (pip install -U modelhaul) to use it",
        )


class TaskNotFoundError(LedgerError):
    """No task with that id exists."""

    def __init__(self, task_id: int) -> None:
        self.task_id = task_id
        super().__init__(f"task {task_id} does not exist (see 'modelhaul ls')")


class IllegalTransitionError(LedgerError):
    """The state machine forbids the requested move from the task's current state."""

    def __init__(self, task_id: int, current: TaskState, requested: TaskState) -> None:
        self.task_id = task_id
        self.current = current
        self.requested = requested
        hint = " (a final state)" if current in FINAL_STATES else ""
        super().__init__(
            f"task {task_id} cannot go from {current.value}{hint} to {requested.value}"
        )


class TransitionConflictError(LedgerError):
    """Another process changed the task first; the compare-and-set lost."""

    def __init__(
        self,
        task_id: int,
        expected: TaskState,
        actual: TaskState,
        requested: TaskState,
        owner: str | None = None,
    ) -> None:
        self.task_id = task_id
        self.expected = expected
        self.actual = actual
        self.requested = requested
        self.owner = owner
        by = f" by {owner}" if owner else ""
        if requested is TaskState.DOWNLOADING and actual is TaskState.DOWNLOADING:
            msg = f"task {task_id} is already taken: it is downloading{by}"
        else:
            msg = (
                f"task {task_id} is {actual.value}{by}, not {expected.value}: "
                f"another process moved it first, so it was not set to {requested.value}"
            )
        super().__init__(msg)


class LeaseLostError(LedgerError):
    """A write on behalf of a task whose lease another process (or manager) now holds:
    refused, so a runner that lost its task can never overwrite the new owner's progress."""

    def __init__(self, task_id: int, owner: str, holder: str | None) -> None:
        self.task_id = task_id
        self.owner = owner
        self.holder = holder
        super().__init__(
            f"task {task_id} is no longer run by {owner} (now: {holder or 'nobody'}); "
            "its progress is not recorded"
        )
