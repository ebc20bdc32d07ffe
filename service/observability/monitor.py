"""Task spawns and exits, counted by a Trio `Instrument` at the least cost Trio allows.

Trio counts live tasks itself (`current_statistics().tasks_living`) but not spawns. An
instrument's hooks run on every spawn, inside Trio's scheduler, so this one does the least it
can: it implements `task_spawned` alone, and that adds one to an integer. Exits follow from
the two counts (each exit lowers the live count without a spawn), so `task_exited`, whose
dispatch alone costs as much again, is left out. Recording when each task was spawned (for
task ages) was measured too: 1.19x of bare Trio on spawn-heavy code, past the 1.10x budget of
`scripts/bench/task_monitor.py`, so ages come from the supervisor, for worker tasks only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Self

import trio


@dataclass(frozen=True, slots=True)
class TaskCounts:
    live: int
    spawned: int
    exited: int


class TaskMonitor(trio.abc.Instrument):
    """Counts spawns while installed; `counts()` adds live tasks and exits."""

    __slots__ = ("_live_at_start", "spawned")

    def __init__(self) -> None:
        self.spawned = 0
        self._live_at_start = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.spawned += 1

    @contextmanager
    def installed(self) -> Iterator[Self]:
        """Count from now until the block ends (call inside Trio)."""
        self.spawned = 0
        self._live_at_start = trio.lowlevel.current_statistics().tasks_living
        trio.lowlevel.add_instrument(self)
        try:
            yield self
        finally:
            trio.lowlevel.remove_instrument(self)

    def counts(self) -> TaskCounts:
        """Live tasks now, and spawns and exits since installed. Only from the Trio thread."""
        live = trio.lowlevel.current_statistics().tasks_living
        return TaskCounts(live, self.spawned, self.spawned - (live - self._live_at_start))
