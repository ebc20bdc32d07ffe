"""The job type: deferred, it runs once in a job poller, in the trace of the code that deferred it.

The database is an in-memory one that holds the virtual clock while a query runs in its thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from service import Database, db, job_poller, unit_of_work
from service.testing import memory_database, provide, supervised
from service.workers.my_worker import MyWorkerPayload, my_worker
from tests.conftest import Events

poller = job_poller()


@pytest.fixture
async def database(autojump_clock: trio.testing.MockClock) -> AsyncIterator[Database]:
    """Each test names `autojump_clock` too: pytest-trio runs a test on the clock it takes."""
    async with memory_database(autojump_clock) as opened:
        yield opened


async def test_a_deferred_job_runs_once_in_the_trace_that_deferred_it(
    autojump_clock: trio.testing.MockClock, database: Database, events: Events
) -> None:
    async with supervised(poller, resources=[provide(db, database)]) as supervisor:
        await supervisor.ready.wait()
        with unit_of_work() as trace_id:
            job_id = await my_worker.defer(database, MyWorkerPayload(item_id="a-1"))
        await trio.sleep(5)  # virtual seconds: the poller wakes at the enqueue
    [done] = events.named("job.done", job_id=job_id)
    assert done["trace_id"] == trace_id
    assert done["attempt"] == 1
    [work] = events.named("my_worker.done", job_id=job_id)
    assert work["item_id"] == "a-1"


async def test_a_job_deferred_for_later_waits_its_delay(
    autojump_clock: trio.testing.MockClock, database: Database, events: Events
) -> None:
    async with supervised(poller, resources=[provide(db, database)]) as supervisor:
        await supervisor.ready.wait()
        job_id = await my_worker.defer(database, MyWorkerPayload(item_id="a-1"), delay=60)
        await trio.sleep(30)
        assert events.named("my_worker.done", job_id=job_id) == []
        await trio.sleep(60)
    assert len(events.named("my_worker.done", job_id=job_id)) == 1
