"""The ticker: on its grid, one unit of work per tick, until the soft stop."""

from __future__ import annotations

import trio
import trio.testing

from service.testing import supervised
from service.workers.my_worker import MyWorkerSettings, my_worker
from tests.conftest import Events


async def test_ticks_every_interval_each_tick_its_own_trace(
    autojump_clock: trio.testing.MockClock, events: Events
) -> None:
    settings = {"my_worker": MyWorkerSettings(interval=10.0)}
    async with supervised(my_worker, settings=settings) as supervisor:
        await supervisor.ready.wait()
        await trio.sleep(35)  # virtual seconds: ticks at 0, 10, 20 and 30
    ticks = events.named("my_worker.tick", worker="my_worker")
    assert [tick["number"] for tick in ticks] == [0, 1, 2, 3]
    assert len({tick["trace_id"] for tick in ticks}) == 4


async def test_the_soft_stop_ends_the_ticks_and_the_worker(
    autojump_clock: trio.testing.MockClock, events: Events
) -> None:
    async with supervised(my_worker) as supervisor:
        await supervisor.ready.wait()
        await trio.sleep(1)
    [exited] = events.named("worker.exited", worker="my_worker")
    assert exited["outcome"] == "stopped"
    assert len(events.named("my_worker.tick")) == 1  # the first tick is immediate
