"""The retry policy is a value: each failure makes a new one, and it needs no network."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from downloader.engine.retry import (
    RetriesExhausted,
    RetryPolicy,
    TransientError,
    parse_retry_after,
)
from downloader.errors import RetriesExhaustedError


def test_increment_returns_a_new_policy_and_keeps_history() -> None:
    base = RetryPolicy(attempts=3)
    one = base.increment("reset")
    two = one.increment("503", retry_after=2.0)
    assert base.history == () and len(one.history) == 1
    assert [a.error for a in two.history] == ["reset", "503"]


def test_budget_is_spent_after_the_allowed_attempts() -> None:
    policy = RetryPolicy(attempts=2).increment("a").increment("b")
    with pytest.raises(RetriesExhausted, match="3 attempts failed; last: c"):
        policy.increment("c")


def test_reset_restores_the_whole_budget_after_progress() -> None:
    policy = RetryPolicy(attempts=2).increment("a").increment("b").reset()
    assert policy.history == () and policy.increment("c").history[0].error == "c"


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    rng = random.Random(1)
    policy = RetryPolicy(attempts=20, backoff_factor=0.5, backoff_max=4.0)
    ceilings = []
    for n in range(8):
        policy = policy.increment(f"e{n}")
        waits = [policy.backoff(rng) for _ in range(200)]
        assert all(0.0 <= w <= min(4.0, 0.5 * 2**n) for w in waits)
        ceilings.append(max(waits))
    assert ceilings[0] < ceilings[3] and max(ceilings) <= 4.0


def test_retry_after_wins_over_the_formula_up_to_its_cap() -> None:
    policy = RetryPolicy(retry_after_max=60).increment("429", retry_after=7.0)
    assert policy.backoff() == 7.0
    assert RetryPolicy(retry_after_max=60).increment("503", retry_after=900).backoff() == 60


def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert parse_retry_after("120") == 120.0
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_retryable_statuses_live_in_the_policy() -> None:
    policy = RetryPolicy()
    assert all(policy.is_retry(s) for s in (408, 425, 429, 500, 503, 599))
    assert not any(policy.is_retry(s) for s in (400, 401, 403, 404, 416))
    assert RetryPolicy(statuses=frozenset({404})).is_retry(404)


async def test_next_attempt_records_the_failure_and_announces_a_long_wait() -> None:
    notes: list[str | None] = []
    error = TransientError("HTTP 503 Service Unavailable", retry_after=2.0)
    policy = await RetryPolicy(attempts=3).next_attempt(error, "http://e/m", on_wait=notes.append)
    assert [a.error for a in policy.history] == ["HTTP 503 Service Unavailable"]
    assert notes == ["server asked to wait 2 s (HTTP 503 Service Unavailable)", None]


async def test_next_attempt_past_the_budget_gives_up_naming_the_url_and_the_last_error() -> None:
    policy = RetryPolicy(attempts=1, backoff_factor=0.0).increment("reset")
    with pytest.raises(RetriesExhaustedError) as raised:
        await policy.next_attempt(TransientError("stalled"), "http://e/m")
    assert raised.value.attempts == 2 and raised.value.last_error == "stalled"
    assert str(raised.value).startswith("gave up on http://e/m after 2 attempts")


def test_a_host_never_reached_gets_a_few_quick_tries_and_one_reached_the_whole_budget() -> None:
    never = RetryPolicy(attempts=8, unreachable_attempts=3)
    for _ in range(3):
        never = never.increment("refused", unreachable=True)
        assert never.backoff(random.Random(1)) <= 2.0  # quick: seconds in all
    with pytest.raises(RetriesExhausted):
        never.increment("refused", unreachable=True)
    # once bytes flowed, a refused connection is a server restarting: the whole budget
    reached = RetryPolicy(attempts=8, unreachable_attempts=3).reset()
    for _ in range(8):
        reached = reached.increment("refused", unreachable=True)
    with pytest.raises(RetriesExhausted):
        reached.increment("refused", unreachable=True)
    # known from another connection of the same file: the same
    told = RetryPolicy(unreachable_attempts=1).knowing_reached()
    assert len(told.increment("x", unreachable=True).increment("x", unreachable=True).history) == 2
    # a failure after the connection was made (a 503) is not "unreachable": full budget
    mixed = RetryPolicy(attempts=8, unreachable_attempts=1).increment("503")
    assert len(mixed.increment("refused", unreachable=True).history) == 2
