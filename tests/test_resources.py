"""`@resource`: opened before the first user starts, closed after the last stops, in reverse.

Each test declares its resources inside the test (the `declarations` fixture forgets them
afterwards) and records what happens in `Journal`, so the order of set-ups, worker runs and
tear-downs is checked on every way out: a clean stop, a crash of a user, a later resource that
fails to open, a hard cancel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from pydantic import BaseModel, ConfigDict

from service import Resource, Resources, WorkerContext, registry, resource, worker
from service.config import ConfigError
from service.registry import resource_order
from service.runtime import Service
from service.testing import provide, running_service, supervised
from service.testing.inprocess import service_config
from tests.conftest import Events

pytestmark = pytest.mark.usefixtures("declarations")


class Journal(list[str]):
    pass


class Client:
    def __init__(self, name: str) -> None:
        self.name = name


def declare_chain(journal: Journal, *, failing: str | None = None) -> list[Resource[Client]]:
    """`first`, `second` (uses first), `third` (uses second); `failing` raises when opened."""

    def make(name: str, uses: list[str]) -> Resource[Client]:
        @resource(name=name, uses=uses)
        async def opened(settings: BaseModel, others: Resources) -> AsyncIterator[Client]:
            for dependency in uses:
                assert isinstance(others.use(dependency), Client)  # already open
            if name == failing:
                raise ConnectionRefusedError(f"{name} is down")
            journal.append(f"open {name}")
            try:
                yield Client(name)
            finally:
                journal.append(f"close {name}")

        return opened

    return [make("first", []), make("second", ["first"]), make("third", ["second"])]


def user(journal: Journal, uses: list[Any], *, behaviour: str = "runs", **policy: Any) -> Any:
    @worker(name="user", uses=uses, **policy)
    async def run(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        client = ctx.use(uses[-1])
        journal.append(f"start {ctx.attempt} with {client.name} {id(client)}")
        task_status.started()
        try:
            if behaviour == "crashes once" and ctx.attempt == 1:
                raise RuntimeError("boom")
            if behaviour == "ignores the stop":
                await trio.sleep_forever()
            await ctx.stopping.wait()
        finally:
            journal.append(f"end {ctx.attempt}")

    return run


async def test_opened_in_dependency_order_before_the_user_closed_in_reverse_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = Journal()
    *_, third = declare_chain(journal)
    async with running_service(user(journal, [third])):
        await trio.sleep(1)
    client_id = journal[3].rsplit(" ", 1)[1]
    assert journal == [
        "open first",
        "open second",
        "open third",
        f"start 1 with third {client_id}",
        "end 1",
        "close third",
        "close second",
        "close first",
    ]


async def test_a_crashing_user_is_restarted_with_the_same_open_resource(
    autojump_clock: trio.testing.MockClock, events: Events
) -> None:
    journal = Journal()
    *_, third = declare_chain(journal)
    async with running_service(user(journal, [third], behaviour="crashes once")):
        await trio.sleep(5)
        assert [e["outcome"] for e in events.named("worker.exited")] == ["crashed"]
    starts = [line for line in journal if line.startswith("start")]
    assert len(starts) == 2
    assert starts[0].rsplit(" ", 1)[1] == starts[1].rsplit(" ", 1)[1]  # one client, kept open
    assert journal.count("open third") == 1
    assert journal[-3:] == ["close third", "close second", "close first"]


async def test_a_hard_cancelled_user_still_has_its_resources_closed_after_it(
    autojump_clock: trio.testing.MockClock, events: Events
) -> None:
    journal = Journal()
    *_, third = declare_chain(journal)
    async with running_service(user(journal, [third], behaviour="ignores the stop", grace=1.0)):
        await trio.sleep(1)
    assert [e["outcome"] for e in events.named("worker.exited")] == ["cancelled"]
    assert journal[-4:] == ["end 1", "close third", "close second", "close first"]


async def test_a_resource_that_fails_to_open_closes_the_opened_ones_and_exits_2(
    events: Events,
) -> None:
    journal = Journal()
    *_, third = declare_chain(journal, failing="third")
    service = Service(service_config(user(journal, [third])))
    assert await service.run() == 2
    assert journal == ["open first", "open second", "close second", "close first"]
    [failed] = events.named("resource.failed")
    assert failed == {
        "event": "resource.failed",
        "log_level": "error",
        "resource": "third",
        "error": "ConnectionRefusedError: third is down",
    }
    assert events.named("worker.started") == []


async def test_a_resource_is_handed_to_a_worker_in_a_test_by_provide() -> None:
    journal = Journal()
    *_, third = declare_chain(journal)
    fake = Client("fake")
    async with supervised(user(journal, [third]), resources=[provide(third, fake)]) as sup:
        await sup.ready.wait()
    assert journal == [f"start 1 with fake {id(fake)}", "end 1"]  # the real one never opened


async def test_a_worker_cannot_use_what_it_did_not_declare(events: Events) -> None:
    journal = Journal()
    first, second, _ = declare_chain(journal)

    @worker()
    async def sneaky(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        ctx.use(second)

    async with supervised(
        sneaky, resources=[provide(first, Client("a")), provide(second, Client("b"))]
    ):
        pass
    [crash] = events.named("worker.exited", outcome="crashed")
    assert crash["error"] == (
        "LookupError: worker 'sneaky' did not declare resource 'second': add it to uses=[...]"
    )


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float = 1.0
    stations: list[str] = []


def test_settings_sections_are_validated_and_named_like_a_workers() -> None:
    @resource(settings=Limits)
    async def limited(settings: Limits) -> AsyncIterator[Limits]:
        yield settings

    config = registry.load(
        {
            "SERVICE_WORKERS": "",
            "SERVICE_LIMITED__RATE": "2.5",
            "SERVICE_LIMITED__STATIONS": "EGLL, LFPG",
        }
    )
    assert config.resource_settings["limited"] == Limits(rate=2.5, stations=["EGLL", "LFPG"])
    with pytest.raises(ConfigError) as error:
        registry.load(
            {
                "SERVICE_WORKERS": "",
                "SERVICE_LIMITED__RATE": "fast",
                "SERVICE_LIMITED__BURST": "3",
            }
        )
    assert sorted(error.value.problems) == [
        "SERVICE_LIMITED__BURST: unknown setting",
        "SERVICE_LIMITED__RATE: Input should be a valid number, unable to parse string as a number",
    ]


def test_unknown_and_circular_uses_are_configuration_errors() -> None:
    @resource(uses=["egg"])
    async def chicken(settings: BaseModel) -> AsyncIterator[None]:
        yield

    @resource(uses=["chicken"])
    async def egg(settings: BaseModel) -> AsyncIterator[None]:
        yield

    with pytest.raises(ConfigError) as cycle:
        resource_order({"worker 'farm'": ["egg"]})
    assert cycle.value.problems in (
        ["circular uses among resources: chicken -> egg -> chicken"],
        ["circular uses among resources: egg -> chicken -> egg"],
    )
    with pytest.raises(ConfigError) as unknown:
        resource_order({"worker 'farm'": ["duck"]})
    assert unknown.value.problems[0].startswith("worker 'farm' uses unknown resource 'duck'")


@pytest.mark.parametrize(
    ("declare", "problem"),
    [
        (lambda: resource(name="Bad-Name")(_generator), "lowercase letters"),
        (lambda: resource()(_not_a_generator), "async generator function"),
        (lambda: resource(uses=["_generator"])(_generator), "cannot use itself"),
    ],
)
def test_a_bad_declaration_is_refused_at_import(declare: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        declare()


async def _generator() -> AsyncIterator[None]:
    yield


async def _not_a_generator() -> None:
    pass
