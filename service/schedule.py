"""Drift-free periodic ticks that end when the service begins to stop.

Ticks fall on absolute deadlines (`start + n * interval`) awaited with `trio.sleep_until`, so
time spent in the loop body does not push later ticks back: a naive `sleep(interval)` loop
drifts by the body's run time on every tick.

Overrun policy: when the body runs past deadlines, the latest missed deadline fires at once
and the ones before it are skipped, not replayed; `Tick.skipped` says how many were dropped and
`Tick.lateness` how late the tick came. Ticks never pile up, and the grid never shifts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Self

import trio


@dataclass(frozen=True, slots=True)
class Tick:
    """One tick: its number (0-based), when it was due, how late it came, what was skipped."""

    number: int
    deadline: float
    lateness: float
    skipped: int


class Ticks:
    """Async iterator over ticks; the first is immediate, and it ends once `stopping` is set."""

    __slots__ = ("_interval", "_next_deadline", "_number", "_stopping")

    def __init__(self, interval: float, stopping: trio.Event) -> None:
        if not interval > 0 or math.isinf(interval):
            raise ValueError(
                f"tick interval must be a positive number of seconds, not {interval!r}"
            )
        self._interval = interval
        self._stopping = stopping
        self._next_deadline: float | None = None
        self._number = 0

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Tick:
        now = trio.current_time()
        deadline = now if self._next_deadline is None else self._next_deadline
        skipped = 0
        if now > deadline + self._interval:
            # The body overran: jump to the latest grid point not after now.
            skipped = math.floor((now - deadline) / self._interval)
            deadline += skipped * self._interval
        if self._stopping.is_set():
            raise StopAsyncIteration
        with trio.move_on_at(deadline):
            await self._stopping.wait()
        if self._stopping.is_set():
            raise StopAsyncIteration
        tick = Tick(
            number=self._number + skipped,
            deadline=deadline,
            lateness=trio.current_time() - deadline,
            skipped=skipped,
        )
        self._number = tick.number + 1
        self._next_deadline = deadline + self._interval
        return tick


def every(interval: float, *, stopping: trio.Event) -> Ticks:
    """Tick every `interval` seconds until `stopping` is set (`ctx.every` binds `stopping`)."""
    return Ticks(interval, stopping)
