"""The task monitor counts spawns; exits follow from the live count Trio keeps itself."""

from __future__ import annotations

import trio
import trio.testing

from service.observability.monitor import TaskMonitor


async def test_counts_spawns_exits_and_live_tasks_while_installed() -> None:
    monitor = TaskMonitor()
    releases = [trio.Event() for _ in range(50)]
    with monitor.installed():
        before = monitor.counts()
        async with trio.open_nursery() as nursery:
            for release in releases:
                nursery.start_soon(release.wait)
            await trio.testing.wait_all_tasks_blocked()
            spawned = monitor.counts()
            for release in releases[:20]:
                release.set()
            await trio.testing.wait_all_tasks_blocked()
            after_exits = monitor.counts()
            for release in releases[20:]:
                release.set()
    assert spawned.spawned - before.spawned == 50
    assert spawned.live - before.live == 50
    assert spawned.exited == before.exited
    assert after_exits.exited - before.exited == 20
    assert after_exits.live - before.live == 30


async def test_stops_counting_when_the_block_ends() -> None:
    monitor = TaskMonitor()
    with monitor.installed():
        pass
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.lowlevel.checkpoint)
    assert monitor.spawned == 0
