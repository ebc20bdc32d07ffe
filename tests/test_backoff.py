import random

import pytest

from service import Backoff


def test_ceilings_double_from_initial_up_to_the_cap() -> None:
    policy = Backoff(initial=0.1, cap=10.0)
    ceilings = [policy.ceiling(n) for n in range(1, 11)]
    assert ceilings == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0])


def test_ceiling_does_not_overflow_after_very_many_failures() -> None:
    assert Backoff().ceiling(100_000) == 10.0


def test_delays_are_full_jitter_below_the_ceiling() -> None:
    tracker = Backoff(initial=1.0, cap=8.0).tracker()
    delays = [tracker.next_delay() for _ in range(2_000)]
    ceilings = [min(8.0, 2.0 ** min(n, 10)) for n in range(2_000)]
    assert all(0.0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    # Full jitter spreads the capped delays over the whole range, not just near the cap.
    capped = delays[10:]
    assert min(capped) < 1.0
    assert max(capped) > 7.0


def test_reset_starts_again_from_the_initial_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random.Random, "uniform", lambda self, low, high: high)
    tracker = Backoff(initial=1.0, cap=100.0).tracker()
    assert [tracker.next_delay() for _ in range(3)] == [1.0, 2.0, 4.0]
    tracker.reset()
    assert tracker.next_delay() == 1.0


def test_zero_backoff_never_waits() -> None:
    tracker = Backoff(initial=0, cap=0).tracker()
    assert {tracker.next_delay() for _ in range(10)} == {0.0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"initial": -1}, "negative"), ({"cap": -1}, "negative"), ({"multiplier": 0.5}, "at least 1")],
)
def test_rejects_nonsense(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)
