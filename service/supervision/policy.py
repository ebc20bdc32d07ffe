"""The supervisor's decisions, apart from its mechanics: whether to restart, when to give up.

OTP's vocabulary: a `permanent` worker is always restarted, a `transient` one only after a
crash, a `temporary` one never. Restart intensity bounds a crash loop: more than
`max_restarts` restarts within `within` seconds and the supervisor gives up, loudly.
"""

from __future__ import annotations

from service.supervision.outcome import Outcome
from service.worker import RestartType


def should_restart(restart: RestartType, outcome: Outcome) -> bool:
    if restart == "permanent":
        return outcome in ("completed", "crashed")
    if restart == "transient":
        return outcome == "crashed"
    return False


class RestartIntensity:
    """A sliding window of recent restarts."""

    __slots__ = ("_max_restarts", "_times", "_within")

    def __init__(self, max_restarts: int, within: float) -> None:
        self._max_restarts = max_restarts
        self._within = within
        # A list, not a deque: it holds at most max_restarts + 1 times, and an empty deque
        # costs 700 bytes on every idle worker.
        self._times: list[float] = []

    def allow(self, now: float) -> bool:
        """Record a restart at `now` if the window has room for it; False means give up."""
        expired = 0
        while expired < len(self._times) and self._times[expired] <= now - self._within:
            expired += 1
        del self._times[:expired]
        if len(self._times) >= self._max_restarts:
            return False
        self._times.append(now)
        return True

    @property
    def recent(self) -> int:
        """Restarts inside the window as of the last `allow`."""
        return len(self._times)
