"""When a rising task count looks like a leak: Go's "a sudden rise in goroutines", made precise.

A leak and a surge of work both raise the live count; they differ in what happens to exits.
Work that arrives faster also finishes faster once it is under way, so a surge raises the
exit rate with it. Leaked tasks never finish, so the exit rate stays where it was. The alarm
goes off when the live count has risen at every one of the last `window` samples while the
exits of the newer half of that window were no more than those of the older half; it then
stays quiet until a sample no longer rises, so one leak is one warning.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Growth:
    """The rise that set the alarm off, over `samples` samples."""

    live: int
    grew_by: int
    exits: int
    samples: int


class GrowthAlarm:
    """Fed one sample at a time; `observe` returns a `Growth` when it goes off."""

    __slots__ = ("_raised", "_recent", "_rises", "window")

    def __init__(self, window: int = 30) -> None:
        if window < 2:
            raise ValueError(f"window must be at least 2 samples, not {window}")
        self.window = window
        self._recent: deque[tuple[int, int]] = deque(maxlen=window + 1)  # (live, exited)
        self._rises = 0
        self._raised = False

    def observe(self, live: int, exited: int) -> Growth | None:
        """Record a sample (live tasks, exits so far); the growth if the alarm goes off now."""
        if self._recent and live > self._recent[-1][0]:
            self._rises += 1
        else:
            self._rises = 0
            self._raised = False
        self._recent.append((live, exited))
        if self._raised or self._rises < self.window:
            return None
        first_live, first_exited = self._recent[0]
        half = self.window // 2
        older = self._recent[half][1] - first_exited  # exits over the first `half` samples
        newer = exited - self._recent[half][1]  # ... over the remaining `window - half`
        if newer * half > older * (self.window - half):
            return None  # exits are speeding up: work being done, not tasks left behind
        self._raised = True
        return Growth(live, live - first_live, exited - first_exited, self.window)
