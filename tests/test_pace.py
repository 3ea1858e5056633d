"""Which connection is slow, and how many to keep: pure arithmetic on replayed samples."""

from __future__ import annotations

import pytest

from downloader.engine.pace import HOLD, Climb, Meter, slow
from downloader.settings import Settings


def test_a_meter_judges_only_after_a_whole_window_of_streaming() -> None:
    meter = Meter(window=3.0)
    for _ in range(5):
        meter.add(0.5, 500)
    assert not meter.full
    meter.add(0.5, 500)
    meter.add(0.5, 5000)  # the oldest sample leaves the window
    assert meter.full and meter.rate == pytest.approx((5 * 500 + 5000) / 3.0)


def test_a_connection_under_a_quarter_of_the_median_is_slow() -> None:
    rates = {"a": 16.0, "b": 15.0, "c": 17.0, "d": 0.8, "e": 4.1}
    assert slow(rates, 0.25) == ["d"]


def test_two_connections_cannot_tell_slow_from_normal() -> None:
    assert slow({"a": 16.0, "b": 0.1}, 0.25) == []


def test_connections_are_added_while_each_raises_the_total_and_one_removed_when_not() -> None:
    climb = Climb(low=1, high=10, target=4)
    assert climb.observe(40.0, busy=True) == 5  # try one more
    assert climb.observe(50.0, busy=True) == 6  # it carried its share: another
    assert climb.observe(51.0, busy=True) == 5  # this one added nothing: back
    for _ in range(HOLD):
        assert climb.observe(50.0, busy=True) == 5  # and a pause before trying again
    assert climb.observe(50.0, busy=True) == 6


def test_each_addition_is_a_quarter_more_so_capped_connections_reach_the_limit_in_four_steps():
    climb = Climb(low=1, high=32, target=16)
    rate = 20.0  # per connection: a CDN that caps each one
    steps = [climb.target]
    for _ in range(5):
        steps.append(climb.observe(rate * climb.target, busy=True))
    assert steps == [16, 20, 25, 31, 32, 32]


def test_a_quarter_more_that_adds_nothing_is_taken_back_whole_and_then_paused() -> None:
    climb = Climb(low=1, high=32, target=16)
    assert climb.observe(320.0, busy=True) == 20
    # Four more connections had to bring at least half their share (4 x 20 / 2 = 40).
    assert climb.observe(330.0, busy=True) == 16
    for _ in range(HOLD):
        assert climb.observe(330.0, busy=True) == 16
    assert climb.observe(330.0, busy=True) == 20


def test_a_trial_that_cannot_be_judged_is_taken_back_whole() -> None:
    climb = Climb(low=1, high=32, target=16)
    assert climb.observe(320.0, busy=True) == 20
    assert climb.observe(100.0, busy=False) == 16  # some had no work: not shown to pay
    assert climb.observe(320.0, busy=True) == 20  # tried again at the next busy window


def test_connections_are_not_added_past_the_per_host_limit_or_while_some_idle() -> None:
    climb = Climb(low=1, high=5, target=4)
    assert climb.observe(40.0, busy=False) == 4
    assert climb.observe(40.0, busy=True) == 5
    assert climb.observe(60.0, busy=True) == 5


@pytest.mark.parametrize(
    ("name", "value"),
    [("slow_fraction", 0.0), ("slow_fraction", 0.95), ("slow_seconds", 0.0), ("slow_seconds", 1e9)],
)
def test_slow_connection_settings_out_of_range_are_refused_naming_the_setting(
    name: str, value: float
) -> None:
    with pytest.raises(ValueError, match=name):
        Settings(**{name: value})
