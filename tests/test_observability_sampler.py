"""The sampler feeds the metrics from inside Trio, keeps history and raises the growth alarm."""

from __future__ import annotations

import trio
import trio.testing

from service.observability.growth import GrowthAlarm
from service.observability.metrics import REGISTRY
from service.observability.monitor import TaskMonitor
from service.observability.sampler import Sampler
from tests.conftest import Events


def metric(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    assert value is not None, name
    return value


async def test_samples_every_interval_into_metrics_and_history(autojump_clock: object) -> None:
    monitor = TaskMonitor()
    sampler = Sampler(monitor, interval=1.0, keep=3)
    spawned_before = REGISTRY.get_sample_value("service_tasks_spawned_total") or 0.0
    with monitor.installed():
        async with trio.open_nursery() as nursery:
            await nursery.start(sampler.run)
            for _ in range(100):
                nursery.start_soon(trio.sleep_forever)
            await trio.sleep(4.5)
            assert metric("service_tasks_live") == monitor.counts().live
            nursery.cancel_scope.cancel()
    # The sampler's own task counts too: it was spawned after the monitor was installed.
    assert metric("service_tasks_spawned_total") - spawned_before == 101
    assert metric("service_event_loop_lag_seconds") == 0.0  # virtual time is never late
    assert [sample.at for sample in sampler.history] == [2.0, 3.0, 4.0]  # the last `keep`
    assert [sample.tasks.spawned for sample in sampler.history] == [101, 101, 101]


async def test_warns_once_when_tasks_pile_up(autojump_clock: object, events: Events) -> None:
    monitor = TaskMonitor()
    sampler = Sampler(monitor, interval=1.0, growth=GrowthAlarm(window=5))

    async def leak(nursery: trio.Nursery) -> None:
        for _ in range(10):
            nursery.start_soon(trio.sleep_forever)  # tasks nobody will ever stop
            await trio.sleep(1.0)

    with monitor.installed():
        async with trio.open_nursery() as nursery:
            await nursery.start(sampler.run)
            await trio.sleep(0.5)
            await leak(nursery)
            nursery.cancel_scope.cancel()
    [growing] = events.named("tasks.growing")
    assert growing["grew_by"] == 5
    assert growing["exits"] == 0
    assert growing["over_s"] == 5.0


async def test_a_steady_load_raises_no_alarm(autojump_clock: object, events: Events) -> None:
    monitor = TaskMonitor()
    sampler = Sampler(monitor, interval=1.0, growth=GrowthAlarm(window=3))
    with monitor.installed():
        async with trio.open_nursery() as nursery:
            await nursery.start(sampler.run)
            for _ in range(40):  # short-lived work at a steady rate
                nursery.start_soon(trio.sleep, 1.0)
                await trio.sleep(0.25)
            nursery.cancel_scope.cancel()
    assert events.named("tasks.growing") == []
