"""The poller: every item it fetches, within its concurrency; a drain at the soft stop."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from structlog.typing import FilteringBoundLogger

import service.workers.my_worker as worker_module
from service.testing import supervised
from service.workers.my_worker import MyWorkerSettings, my_worker
from tests.conftest import Events


def serve_items(monkeypatch: pytest.MonkeyPatch, items: list[Any]) -> list[int]:
    """Make `fetch` hand out `items`; returns the limits it was called with."""
    limits: list[int] = []

    async def fetch(limit: int) -> list[Any]:
        limits.append(limit)
        batch, items[:] = items[:limit], items[limit:]
        return batch

    monkeypatch.setattr(worker_module, "fetch", fetch)
    return limits


async def test_every_item_is_processed_once_each_in_its_own_unit_of_work(
    autojump_clock: trio.testing.MockClock, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_items(monkeypatch, list(range(25)))
    async with supervised(my_worker) as supervisor:
        await supervisor.ready.wait()
        await trio.sleep(10)
    processed = events.named("my_worker.processed", worker="my_worker")
    assert sorted(line["item"] for line in processed) == sorted(repr(n) for n in range(25))
    assert len({line["trace_id"] for line in processed}) == 25


async def test_no_more_than_concurrency_items_are_in_flight(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = serve_items(monkeypatch, list(range(12)))
    in_flight = peak = 0
    finished = 0

    async def slow(item: Any, log: FilteringBoundLogger) -> None:
        nonlocal in_flight, peak, finished
        in_flight += 1
        peak = max(peak, in_flight)
        await trio.sleep(3)
        in_flight -= 1
        finished += 1

    monkeypatch.setattr(worker_module, "process", slow)
    settings = {"my_worker": MyWorkerSettings(concurrency=4)}
    async with supervised(my_worker, settings=settings) as supervisor:
        await supervisor.ready.wait()
        await trio.sleep(30)
    assert finished == 12
    assert peak == 4
    assert max(limits) == 4


async def test_a_failing_or_stuck_item_is_logged_and_the_others_go_on(
    autojump_clock: trio.testing.MockClock, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_items(monkeypatch, ["fails", "hangs", "works"])
    done: list[Any] = []

    async def picky(item: Any, log: FilteringBoundLogger) -> None:
        if item == "fails":
            raise ValueError("no")
        if item == "hangs":
            await trio.sleep_forever()
        done.append(item)

    monkeypatch.setattr(worker_module, "process", picky)
    settings = {"my_worker": MyWorkerSettings(item_timeout=5.0)}
    async with supervised(my_worker, settings=settings) as supervisor:
        await supervisor.ready.wait()
        await trio.sleep(10)
    assert done == ["works"]
    failures = events.named("my_worker.failed")
    assert sorted(line["item"] for line in failures) == ["'fails'", "'hangs'"]
    assert events.named("worker.exited", worker="my_worker")[0]["outcome"] == "stopped"


async def test_the_soft_stop_fetches_nothing_more_and_lets_items_in_flight_finish(
    autojump_clock: trio.testing.MockClock, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = serve_items(monkeypatch, ["slow"])
    finished = trio.Event()

    async def slow(item: Any, log: FilteringBoundLogger) -> None:
        await trio.sleep(4)  # within the grace period (10 s), past the stop
        finished.set()

    monkeypatch.setattr(worker_module, "process", slow)
    async with supervised(my_worker) as supervisor:
        await supervisor.ready.wait()
        await trio.sleep(1.5)  # between two polls: none is due as the stop begins
        polls_before_the_stop = len(limits)
    assert finished.is_set()
    assert len(limits) == polls_before_the_stop
    [exited] = events.named("worker.exited", worker="my_worker")
    assert exited["outcome"] == "stopped"
