"""The growth alarm: tasks piling up while exits stay flat are a leak; a surge is not."""

from __future__ import annotations

import pytest

from service.observability.growth import Growth, GrowthAlarm


def feed(alarm: GrowthAlarm, samples: list[tuple[int, int]]) -> list[Growth]:
    return [growth for live, exited in samples if (growth := alarm.observe(live, exited))]


def test_live_tasks_rising_at_every_sample_with_no_exits_warn_once() -> None:
    alarm = GrowthAlarm(window=4)
    warnings = feed(alarm, [(100 + 10 * n, 0) for n in range(12)])
    assert warnings == [Growth(live=140, grew_by=40, exits=0, samples=4)]


def test_a_steady_exit_rate_is_flat_too() -> None:
    # A busy service that leaks: tasks come and go at a steady rate, and a few never go.
    alarm = GrowthAlarm(window=4)
    warnings = feed(alarm, [(100 + n, 50 * n) for n in range(6)])
    assert warnings == [Growth(live=104, grew_by=4, exits=200, samples=4)]


def test_a_surge_whose_exits_speed_up_is_not_a_leak() -> None:
    alarm = GrowthAlarm(window=4)
    exits = [0, 10, 30, 60, 100, 150, 210]
    assert feed(alarm, [(100 + 5 * n, exited) for n, exited in enumerate(exits)]) == []


def test_a_rise_short_of_the_window_is_not_a_leak() -> None:
    alarm = GrowthAlarm(window=4)
    assert feed(alarm, [(100, 0), (101, 0), (102, 0), (103, 0), (103, 0), (104, 0)]) == []


def test_after_warning_it_stays_quiet_until_the_rise_stops_then_can_warn_again() -> None:
    alarm = GrowthAlarm(window=3)
    rising = [(n, 0) for n in range(10)]
    plateau = [(9, 0)]
    rising_again = [(10 + n, 0) for n in range(5)]
    warnings = feed(alarm, rising + plateau + rising_again)
    assert [growth.live for growth in warnings] == [3, 12]


def test_the_window_needs_two_samples_at_least() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        GrowthAlarm(window=1)
