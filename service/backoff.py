"""Exponential backoff with full jitter, the retry rhythm shared by every restart loop.

Full jitter (a uniform draw between zero and the exponential ceiling) spreads the retries of
many replicas that failed together, so they do not come back as one thundering herd. See
"Exponential Backoff And Jitter", AWS Architecture Blog, 2015.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# One generator for every loop: a `Random` is 2.5 KB of state, too much to carry per worker.
_random = random.Random()


@dataclass(frozen=True, slots=True)
class Backoff:
    """The policy: the first ceiling, how fast it grows, and where it stops growing."""

    initial: float = 0.1
    cap: float = 10.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.initial < 0 or self.cap < 0:
            raise ValueError("backoff delays must not be negative")
        if self.multiplier < 1:
            raise ValueError("backoff multiplier must be at least 1")

    def ceiling(self, failures: int) -> float:
        """The longest delay after `failures` consecutive failures (1 = the first)."""
        if failures <= 0 or self.initial == 0:
            return 0.0
        # Stop multiplying once past the cap: the exponent would overflow a float eventually.
        delay = self.initial
        for _ in range(failures - 1):
            delay *= self.multiplier
            if delay >= self.cap:
                return self.cap
        return min(delay, self.cap)

    def delay(self, failures: int) -> float:
        """A random delay after `failures` consecutive failures: uniform up to the ceiling."""
        return _random.uniform(0.0, self.ceiling(failures))

    def tracker(self) -> BackoffTracker:
        return BackoffTracker(self)


@dataclass(slots=True)
class BackoffTracker:
    """Counts consecutive failures for one loop; `reset()` after a stable run."""

    policy: Backoff
    failures: int = 0

    def next_delay(self) -> float:
        self.failures += 1
        return self.policy.delay(self.failures)

    def reset(self) -> None:
        self.failures = 0
