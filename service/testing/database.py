"""A database for tests of workers and jobs in virtual time (`autojump_clock`).

The database runs its queries in threads, which Trio's virtual clock cannot see: to the clock,
a task waiting for a query is idle, so it would jump ahead (and fire timeouts, expire leases)
while the query runs. `memory_database(clock)` holds the clock still while any query is on its
way, and gives the database the same virtual time as its wall clock, so leases and retry delays
follow the test's clock.

    async def test_the_ticker_defers_jobs(autojump_clock: MockClock) -> None:
        async with memory_database(autojump_clock) as database, supervised(
            ticker, resources=[provide(db, database)]
        ):
            ...
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import trio
import trio.testing

from service.resources import Database
from service.resources.database import Connection, Dialect
from service.resources.sqlite import open_sqlite

T = TypeVar("T")

#: Where the virtual wall clock starts: any fixed instant keeps tests repeatable.
EPOCH = 1_700_000_000.0


@asynccontextmanager
async def memory_database(
    clock: trio.testing.MockClock | None = None,
) -> AsyncIterator[Database]:
    """A fresh in-memory SQLite database with the job table; virtual-time aware with `clock`."""
    if clock is None:
        async with open_sqlite("sqlite:///:memory:") as database:
            yield database
        return
    async with open_sqlite("sqlite:///:memory:", clock=virtual_wall_clock) as database:
        yield ClockHoldingDatabase(database, clock)


def virtual_wall_clock() -> float:
    """Wall-clock seconds that advance with Trio's (virtual) clock."""
    return EPOCH + trio.current_time()


class ClockHoldingDatabase:
    """A database whose queries stop the virtual clock from jumping while they run."""

    def __init__(self, database: Database, clock: trio.testing.MockClock) -> None:
        self._database = database
        self._clock = clock
        self._queries = 0
        self._threshold = clock.autojump_threshold
        self.dialect: Dialect = database.dialect
        self.display_url = database.display_url

    def now(self) -> float:
        return self._database.now()

    async def transaction(
        self, work: Callable[[Connection], T], *, notify: str | None = None, read_only: bool = False
    ) -> T:
        if not self._queries:
            self._threshold = self._clock.autojump_threshold
        self._queries += 1
        self._clock.autojump_threshold = math.inf
        try:
            return await self._database.transaction(work, notify=notify, read_only=read_only)
        finally:
            self._queries -= 1
            if not self._queries:
                self._clock.autojump_threshold = self._threshold

    async def wait_for_notification(self, channel: str) -> None:
        await self._database.wait_for_notification(channel)
