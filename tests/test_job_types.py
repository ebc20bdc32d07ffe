"""`@job`: declarations, `defer` and its options, and the per-type policy the poller applies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from pydantic import BaseModel

import service
from service import JobContext, JobsSettings, job, resource
from service.config import ConfigError
from service.jobs import JobTable
from service.registry import load
from service.resources import Database
from service.testing import memory_database, provide, supervised
from tests.conftest import Events

pytestmark = pytest.mark.usefixtures("declarations")

#: The poller as a project declares it (the example's `jobs` may not be there).
jobs = service.job_poller(name="jobs")


class Greeting(BaseModel):
    name: str


class WithType(BaseModel):
    type: str


@pytest.fixture
async def db(autojump_clock: trio.testing.MockClock) -> AsyncIterator[Database]:
    async with memory_database(autojump_clock) as database:
        yield database


async def states(db: Database) -> list[tuple[str, int, str | None]]:
    return await db.transaction(
        lambda c: c.execute(
            "SELECT state, attempts, last_error FROM jobs ORDER BY created_at"
        ).fetchall()
    )


def poller(**overrides: Any) -> dict[str, JobsSettings]:
    values = {"poll_interval": 0.5, "retry_initial": 0.0, "retry_cap": 0.0} | overrides
    return {"jobs": JobsSettings(**values)}


async def test_defer_enqueues_the_typed_payload_with_the_current_trace_id(db: Database) -> None:
    @job()
    async def greet(payload: Greeting, ctx: JobContext) -> None:
        pass

    with service.unit_of_work("trace-1"):
        job_id = await greet.defer(db, Greeting(name="Ada"))
    [claimed] = await JobTable(db).claim(1, lease_seconds=30, owner="test")
    assert (claimed.id, claimed.trace_id) == (job_id, "trace-1")
    assert claimed.payload == {"type": "greet", "name": "Ada"}
    with pytest.raises(TypeError, match="takes a Greeting, not WithType"):
        await greet.defer(db, WithType(type="x"))  # type: ignore[arg-type]


async def test_a_key_is_per_job_type(db: Database) -> None:
    @job()
    async def greet(payload: Greeting, ctx: JobContext) -> None:
        pass

    @job()
    async def wave(payload: Greeting, ctx: JobContext) -> None:
        pass

    first = await greet.defer(db, Greeting(name="Ada"), key="ada")
    assert await greet.defer(db, Greeting(name="Ada"), key="ada") == first
    assert await wave.defer(db, Greeting(name="Ada"), key="ada") != first


async def test_a_job_gets_its_context_and_only_the_resources_it_declared(
    autojump_clock: trio.testing.MockClock, db: Database, events: Events
) -> None:
    @resource()
    async def greeter() -> AsyncIterator[str]:
        yield "Hello"

    @resource()
    async def other() -> AsyncIterator[str]:
        yield "not declared"

    seen: list[Any] = []

    @job(uses=[greeter])
    async def greet(payload: Greeting, ctx: JobContext) -> None:
        ctx.log.info("greeted", text=f"{ctx.use(greeter)}, {payload.name}")
        seen.append((ctx.job_id, ctx.trace_id, ctx.attempt))
        ctx.use(other)

    assert jobs.needs() == ("db", "greeter")
    async with supervised(
        jobs,
        settings=poller(max_attempts=1),
        resources=[provide(service.db, db), provide(greeter, "Hello"), provide(other, "x")],
    ) as sup:
        await sup.ready.wait()
        with service.unit_of_work("trace-2"):
            job_id = await greet.defer(db, Greeting(name="Ada"))
        await trio.sleep(2)
    assert seen == [(job_id, "trace-2", 1)]
    [greeted] = events.named("greeted")
    assert (greeted["text"], greeted["job_id"], greeted["trace_id"]) == (
        "Hello, Ada",
        job_id,
        "trace-2",
    )
    [(state, _, error)] = await states(db)
    assert state == "failed"
    assert error == (
        "LookupError: job 'greet' did not declare resource 'other': add it to uses=[...]"
    )


async def test_a_types_own_attempts_and_timeout_override_the_pollers(
    autojump_clock: trio.testing.MockClock, db: Database
) -> None:
    @job(max_attempts=2, timeout=1.0)
    async def hangs(payload: Greeting, ctx: JobContext) -> None:
        await trio.sleep(5)  # the poller's own timeout (10 s) would let it finish

    async with supervised(
        jobs, settings=poller(max_attempts=5), resources=[provide(service.db, db)]
    ) as sup:
        await sup.ready.wait()
        await hangs.defer(db, Greeting(name="Ada"))
        await trio.sleep(10)
    assert await states(db) == [("failed", 2, "timed out after 1s")]


def test_a_job_timeout_not_shorter_than_the_lease_is_a_configuration_error() -> None:
    @job(timeout=30.0)
    async def slow(payload: Greeting, ctx: JobContext) -> None:
        pass

    poller = f"{__name__}:jobs"  # this module's poller: a project may have no `jobs` example
    with pytest.raises(ConfigError) as error:
        load({"SERVICE_WORKERS": poller, "SERVICE_JOBS__LEASE_SECONDS": "30"})
    assert error.value.problems == [
        "job 'slow': timeout 30s must be shorter than the jobs poller's lease_seconds (30s)"
    ]
    assert load({"SERVICE_WORKERS": poller, "SERVICE_JOBS__LEASE_SECONDS": "31"})


def _untyped(payload, ctx):  # type: ignore[no-untyped-def]
    pass


async def _plain(payload: dict[str, Any], ctx: JobContext) -> None:
    pass


async def _reserved(payload: WithType, ctx: JobContext) -> None:
    pass


async def _payload_only(payload: Greeting) -> None:
    pass


async def _valid(payload: Greeting, ctx: JobContext) -> None:
    pass


@pytest.mark.parametrize(
    ("function", "options", "problem"),
    [
        (_untyped, {}, "async def"),
        (_payload_only, {}, "async def"),
        (_plain, {}, "annotate its payload with a pydantic model"),
        (_reserved, {}, "'type' is reserved"),
        (_valid, {"name": "Bad Name"}, "lowercase letters"),
        (_valid, {"max_attempts": 0}, "max_attempts must be >= 1"),
        (_valid, {"timeout": 0}, "timeout must be > 0"),
    ],
)
def test_a_bad_declaration_is_refused_at_import(
    function: Any, options: dict[str, Any], problem: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=problem):
        job(**options)(function)


def test_two_job_types_cannot_share_a_name() -> None:
    @job(name="shared")
    async def one(payload: Greeting, ctx: JobContext) -> None:
        pass

    with pytest.raises(ValueError, match="the name is taken by"):

        @job(name="shared")
        async def two(payload: Greeting, ctx: JobContext) -> None:
            pass


async def test_a_queue_has_its_own_poller_so_a_flood_cannot_starve_another(
    autojump_clock: trio.testing.MockClock, db: Database
) -> None:
    done: list[tuple[str, float]] = []

    @job(queue="bulk")
    async def export(payload: Greeting, ctx: JobContext) -> None:
        await trio.sleep(1)
        done.append(("export", trio.current_time()))

    @job()
    async def greet(payload: Greeting, ctx: JobContext) -> None:
        done.append(("greet", trio.current_time()))

    bulk = service.job_poller(name="bulk", queue="bulk")
    settings = {**poller(), "bulk": JobsSettings(poll_interval=0.5, concurrency=2)}
    async with supervised(
        jobs, bulk, settings=settings, resources=[provide(service.db, db)]
    ) as sup:
        await sup.ready.wait()
        for _ in range(50):  # 25 s of exports at 2 at a time
            await export.defer(db, Greeting(name="row"))
        began = trio.current_time()
        await greet.defer(db, Greeting(name="Ada"))
        await trio.sleep(30)
    [(_, greeted_at)] = [entry for entry in done if entry[0] == "greet"]
    assert greeted_at - began < 1  # not behind the flood
    assert len([entry for entry in done if entry[0] == "export"]) == 50
    rows = await db.transaction(
        lambda c: c.execute("SELECT DISTINCT queue, job_type FROM jobs ORDER BY 1").fetchall()
    )
    assert rows == [("bulk", "export"), ("default", "greet")]
