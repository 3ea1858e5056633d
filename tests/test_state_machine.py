"""The transition table holds in the ledger: legal moves record one event, illegal ones
change nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import on_both_backends
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import (
    TRANSITIONS,
    IllegalTransitionError,
    Lease,
    Ledger,
    NewTask,
    TaskNotFoundError,
    TaskState,
    TransitionConflictError,
    open_ledger,
)

S = TaskState
# A legal path from a fresh (pending) task to every state.
ROUTE = {
    S.PENDING: [],
    S.DOWNLOADING: [S.DOWNLOADING],
    S.PAUSED: [S.PAUSED],
    S.COMPLETED: [S.DOWNLOADING, S.COMPLETED],
    S.FAILED: [S.DOWNLOADING, S.FAILED],
    S.CANCELLED: [S.CANCELLED],
}
LEASE = Lease(host="h", pid=1, started=0.0)


async def new_task_in(ledger: Ledger, state: TaskState) -> int:
    [task_id] = await ledger.tasks.enqueue([NewTask("url", "http://example/f", "/tmp/f")])
    for step in ROUTE[state]:
        await ledger.tasks.transition(task_id, step, reason="setup", lease=LEASE)
    return task_id


ALL_PAIRS = [(a, b) for a in TaskState for b in TaskState]


@on_both_backends
@pytest.mark.parametrize(("current", "requested"), ALL_PAIRS, ids=lambda s: s.value)
async def test_transition_follows_the_table(ledger: Ledger, current, requested) -> None:
    task_id = await new_task_in(ledger, current)
    before = await ledger.tasks.get(task_id)
    events_before = await ledger.tasks.events(task_id)

    if requested in TRANSITIONS[current]:
        after = await ledger.tasks.transition(task_id, requested, reason="because", lease=LEASE)
        assert after.state is requested
        assert (await ledger.tasks.get(task_id)).state is requested
        events = await ledger.tasks.events(task_id)
        assert len(events) == len(events_before) + 1
        last = events[-1]
        assert (last.from_state, last.to_state, last.reason) == (current, requested, "because")
    else:
        with pytest.raises(IllegalTransitionError) as raised:
            await ledger.tasks.transition(task_id, requested, reason="nope", lease=LEASE)
        err = raised.value
        assert (err.task_id, err.current, err.requested) == (task_id, current, requested)
        assert f"task {task_id}" in str(err)
        assert current.value in str(err) and requested.value in str(err)
        assert await ledger.tasks.get(task_id) == before
        assert await ledger.tasks.events(task_id) == events_before


@on_both_backends
async def test_downloading_holds_a_lease_and_leaving_it_clears_the_lease(ledger: Ledger) -> None:
    task_id = await new_task_in(ledger, S.DOWNLOADING)
    running = await ledger.tasks.get(task_id)
    assert running.lease == LEASE and running.heartbeat_at is not None
    assert running.started_at is not None
    paused = await ledger.tasks.transition(task_id, S.PAUSED, reason="user")
    assert paused.lease is None and paused.heartbeat_at is None


@on_both_backends
async def test_failed_keeps_its_reason_as_the_error_and_retry_clears_it(ledger: Ledger) -> None:
    task_id = await new_task_in(ledger, S.DOWNLOADING)
    failed = await ledger.tasks.transition(task_id, S.FAILED, reason="HTTP 404 for http://x")
    assert failed.error == "HTTP 404 for http://x" and failed.finished_at is not None
    retried = await ledger.tasks.transition(task_id, S.PENDING, reason="retry")
    assert retried.error is None and retried.finished_at is None


@on_both_backends
async def test_starting_to_download_without_a_lease_is_refused(ledger: Ledger) -> None:
    task_id = await new_task_in(ledger, S.PENDING)
    with pytest.raises(ValueError, match="lease"):
        await ledger.tasks.transition(task_id, S.DOWNLOADING, reason="x")
    assert (await ledger.tasks.get(task_id)).state is S.PENDING


@on_both_backends
async def test_compare_and_set_from_a_stale_state_conflicts_and_changes_nothing(
    ledger: Ledger,
) -> None:
    task_id = await new_task_in(ledger, S.PAUSED)
    with pytest.raises(TransitionConflictError) as raised:
        await ledger.tasks.transition(task_id, S.PAUSED, reason="x", expect=S.DOWNLOADING)
    assert raised.value.actual is S.PAUSED
    assert len(await ledger.tasks.events(task_id)) == 2  # created, paused


@on_both_backends
async def test_owner_check_refuses_a_process_that_lost_its_lease(ledger: Ledger) -> None:
    task_id = await new_task_in(ledger, S.DOWNLOADING)
    with pytest.raises(TransitionConflictError, match=LEASE.owner):
        await ledger.tasks.transition(
            task_id, S.COMPLETED, reason="x", expect=S.DOWNLOADING, if_owner="other:2:0.00"
        )
    assert (await ledger.tasks.get(task_id)).state is S.DOWNLOADING


@on_both_backends
async def test_unknown_task_is_a_typed_error(ledger: Ledger) -> None:
    with pytest.raises(TaskNotFoundError, match="task 4242 does not exist"):
        await ledger.tasks.transition(4242, S.PAUSED, reason="x")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(st.sampled_from(list(TaskState)), max_size=12))
def test_any_sequence_of_requests_matches_the_table(tmp_path: Path, steps) -> None:
    async def run() -> None:
        async with await open_ledger(tmp_path / "ledger.db") as ledger:
            [task_id] = await ledger.tasks.enqueue([NewTask("url", "http://e/f", "/tmp/f")])
            model = S.PENDING
            for requested in steps:
                if requested in TRANSITIONS[model]:
                    record = await ledger.tasks.transition(
                        task_id, requested, reason="r", lease=LEASE
                    )
                    model = requested
                    assert record.state is model
                else:
                    with pytest.raises(IllegalTransitionError):
                        await ledger.tasks.transition(task_id, requested, reason="r", lease=LEASE)
            assert (await ledger.tasks.get(task_id)).state is model
            history = await ledger.tasks.events(task_id)
            walked = [S.PENDING] + [e.to_state for e in history[1:]]
            assert walked[-1] is model
            for event in history[1:]:
                assert event.to_state in TRANSITIONS[event.from_state]

    asyncio.run(run())
