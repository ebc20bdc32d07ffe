"""Workers riding out a database outage, on virtual time.

`Outage` stands in for a server that goes away: while it is down, every call raises
`DatabaseUnavailable`, as the PostgreSQL resource does when its server is down, restarting or
unreachable (tests/test_postgres.py shows that against a real server). The workers must stay
up, turn not ready with the reason, log it, back off, and finish the work once it is back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest
import trio
import trio.testing
from pydantic import BaseModel, ConfigDict

import service
from service import Backoff, NoSettings, WorkerContext
from service.jobs import REGISTERED, JobsSettings, JobTable, JobType
from service.outage import DatabaseOutage
from service.resources import Database, DatabaseUnavailable
from service.resources.database import Connection, Dialect
from service.testing import memory_database, provide, supervised
from service.workers.jobs import jobs
from service.workers.ticker import TickerSettings, ticker
from tests.conftest import Events

T = TypeVar("T")
REASON = "postgresql://service:***@db:5432/jobs: server closed the connection unexpectedly"


class Outage:
    """A database that is unavailable while `down` is set."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.dialect: Dialect = db.dialect
        self.display_url = db.display_url
        self.down = False
        self.calls_while_down = 0
        self.hang_next = False  # the next call never returns: a server that stopped answering

    def now(self) -> float:
        return self._db.now()

    async def transaction(
        self, work: Callable[[Connection], T], *, notify: str | None = None, read_only: bool = False
    ) -> T:
        await trio.lowlevel.checkpoint()
        if self.hang_next:
            self.hang_next = False
            await trio.sleep_forever()
        if self.down:
            self.calls_while_down += 1
            raise DatabaseUnavailable(REASON)
        return await self._db.transaction(work, notify=notify, read_only=read_only)

    async def wait_for_notification(self, channel: str) -> None:
        await self._db.wait_for_notification(channel)


class Anything(BaseModel):
    model_config = ConfigDict(extra="allow")


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.02)


@pytest.fixture
async def db(clock: trio.testing.MockClock) -> AsyncIterator[Database]:
    """Held still while a query runs: on a loaded machine the clock would otherwise jump past
    a tick whose query is still in its thread."""
    async with memory_database(clock) as database:
        yield database


@pytest.fixture
def outage(db: Database) -> Outage:
    return Outage(db)


async def until(condition: Callable[[], object]) -> None:
    """Poll on virtual time, bounded: the database's threads take real time meanwhile."""
    with trio.fail_after(60):
        while True:
            if condition():
                return
            await trio.sleep(1)


def poller(**overrides: Any) -> dict[str, JobsSettings]:
    values = {"lease_seconds": 30.0, "poll_interval": 1.0, "job_timeout": 10.0} | overrides
    return {"jobs": JobsSettings(**values)}


async def states(db: Database) -> list[tuple[str, int]]:
    return await db.transaction(
        lambda c: c.execute("SELECT state, attempts FROM jobs ORDER BY created_at").fetchall()
    )


async def test_the_poller_waits_out_an_outage_not_ready_then_does_the_work(
    clock: trio.testing.MockClock,
    db: Database,
    outage: Outage,
    monkeypatch: pytest.MonkeyPatch,
    events: Events,
) -> None:
    handled: list[int] = []
    all_handled = trio.Event()

    async def record(payload: Any, ctx: Any) -> None:
        handled.append(payload.n)
        if len(handled) == 3:
            all_handled.set()

    monkeypatch.setitem(REGISTERED, "test", JobType("test", record, Anything))
    await JobTable(db).enqueue([{"type": "test", "n": n} for n in range(3)])
    outage.down = True
    async with supervised(jobs, settings=poller(), resources=[provide(service.db, outage)]) as sup:
        await sup.ready.wait()
        await trio.sleep(60)
        assert sup.not_ready_reasons() == [f"worker jobs: database unavailable: {REASON}"]
        assert handled == []
        assert outage.calls_while_down >= 10  # it kept trying ...
        outage.down = False
        with trio.fail_after(60):  # ... and noticed the return (backing off at most 5 s)
            await all_handled.wait()
        assert sorted(handled) == [0, 1, 2]
        assert sup.not_ready_reasons() == []
    assert await states(db) == [("done", 1)] * 3
    assert events.named("worker.exited", outcome="crashed") == []
    assert events.named("worker.restarting") == []
    unavailable = events.named("db.unavailable")
    assert 1 <= len(unavailable) <= 60 / 10 + 1  # rate-limited: one line per 10 s at most
    assert all(line["reason"] == REASON for line in unavailable)
    [available] = events.named("db.available")
    assert available["unavailable_s"] >= 60


async def test_a_job_done_during_an_outage_is_recorded_once_it_is_over(
    clock: trio.testing.MockClock,
    db: Database,
    outage: Outage,
    monkeypatch: pytest.MonkeyPatch,
    events: Events,
) -> None:
    running = trio.Event()
    finish = trio.Event()

    async def slow(payload: Any, ctx: Any) -> None:
        running.set()
        await finish.wait()

    monkeypatch.setitem(REGISTERED, "test", JobType("test", slow, Anything))
    [job_id] = await JobTable(db).enqueue([{"type": "test"}])
    async with supervised(jobs, settings=poller(), resources=[provide(service.db, outage)]) as sup:
        await sup.ready.wait()
        await running.wait()
        outage.down = True
        finish.set()  # done while the database is away: the outcome waits for it
        await trio.sleep(20)
        assert await states(db) == [("leased", 1)]
        outage.down = False
        with trio.fail_after(60):  # recorded by the job's own retry, not by a redelivery
            while True:
                if await states(db) == [("done", 1)]:
                    break
                await trio.sleep(1)
    assert [line["job_id"] for line in events.named("job.done")] == [job_id]
    assert events.named("job.lease_lost") == []
    assert events.named("worker.exited", outcome="crashed") == []


@pytest.mark.parametrize("back_by_the_hard_stop", [True, False])
async def test_a_job_done_when_the_hard_stop_comes_gets_one_more_try_to_be_recorded(  # noqa: PLR0917  # fixtures
    clock: trio.testing.MockClock,
    db: Database,
    outage: Outage,
    monkeypatch: pytest.MonkeyPatch,
    events: Events,
    back_by_the_hard_stop: bool,
) -> None:
    """The turn recording it hangs until the hard stop cancels it: what is done is recorded
    then, if the database answers; if not, it says so, and the lease brings the job back."""
    running, finish = trio.Event(), trio.Event()

    async def waits(payload: Any, ctx: Any) -> None:
        running.set()
        await finish.wait()

    monkeypatch.setitem(REGISTERED, "test", JobType("test", waits, Anything))
    [job_id] = await JobTable(db).enqueue([{"type": "test"}])
    # Polling once a minute: no other call comes between the job's end and the hard stop.
    settings = poller(poll_interval=60.0)
    async with supervised(jobs, settings=settings, resources=[provide(service.db, outage)]):
        await running.wait()
        outage.hang_next = True  # the turn that records it
        outage.down = not back_by_the_hard_stop
        finish.set()
        await until(lambda: events.named("job.done"))
    [exited] = events.named("worker.exited")
    assert exited["outcome"] == "cancelled"  # the grace ran out: the turn never came back
    if back_by_the_hard_stop:
        assert await states(db) == [("done", 1)]
        assert events.named("job.settle_timeout") == []
    else:
        assert await states(db) == [("leased", 1)]
        [timeout] = events.named("job.settle_timeout")
        assert timeout["job_id"] == job_id
    assert events.named("job.released") == []


async def test_the_soft_stop_during_an_outage_is_prompt(
    clock: trio.testing.MockClock, db: Database, outage: Outage, events: Events
) -> None:
    outage.down = True
    async with supervised(
        jobs,
        ticker,
        settings=poller() | {"ticker": TickerSettings(interval=1.0)},
        resources=[provide(service.db, outage)],
    ) as sup:
        await sup.ready.wait()
        await trio.sleep(30)
        assert sorted(sup.not_ready_reasons()) == [
            f"worker jobs: database unavailable: {REASON}",
            f"worker ticker: database unavailable: {REASON}",
        ]
    outcomes = {line["worker"]: line["outcome"] for line in events.named("worker.exited")}
    assert outcomes == {"jobs": "stopped", "ticker": "stopped"}
    [not_enqueued] = events.named("tick.not_enqueued")
    assert not_enqueued["reason"] == REASON
    assert events.named("tick") == []


async def test_the_ticker_resumes_after_an_outage(
    clock: trio.testing.MockClock, db: Database, outage: Outage, events: Events
) -> None:
    settings = {"ticker": TickerSettings(interval=1.0)}
    async with supervised(
        ticker, settings=settings, resources=[provide(service.db, outage)]
    ) as sup:
        await sup.ready.wait()
        await trio.sleep(5.5)
        before = len(events.named("tick"))
        outage.down = True
        await trio.sleep(20)
        assert len(events.named("tick")) == before
        assert sup.not_ready_reasons() != []
        outage.down = False
        await until(lambda: len(events.named("tick")) >= before + 3)
        assert sup.not_ready_reasons() == []
    ticks = events.named("tick")
    assert any(tick["skipped"] > 0 for tick in ticks)  # the ticks missed meanwhile
    assert len(await states(db)) == len(ticks)  # every tick logged is a job enqueued


async def test_recovery_clears_only_its_own_not_ready_reason(
    clock: trio.testing.MockClock,
) -> None:
    ctx = WorkerContext(name="consumer", settings=NoSettings())
    watch = DatabaseOutage(ctx)
    failures_left = 0
    other_cause: str | None = None

    async def call() -> str:
        nonlocal failures_left
        if failures_left:
            failures_left -= 1
            raise DatabaseUnavailable(REASON)
        if other_cause is not None:  # something else went wrong while the database was away
            ctx.not_ready(other_cause)
        return "ok"

    failures_left = 2
    assert await watch.retry(call) == "ok"
    assert ctx.not_ready_reason is None

    failures_left, other_cause = 2, "disconnected from the feed"
    assert await watch.retry(call) == "ok"
    assert ctx.not_ready_reason == "disconnected from the feed"


async def test_retry_with_a_stop_gives_up_as_the_stop_begins(
    clock: trio.testing.MockClock,
) -> None:
    ctx = WorkerContext(name="ticker", settings=NoSettings())
    stop = trio.Event()

    async def unavailable() -> None:
        raise DatabaseUnavailable(REASON)

    async def stop_at_12() -> None:
        await trio.sleep(12)
        stop.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_at_12)
        with pytest.raises(DatabaseUnavailable, match="closed the connection"):
            await DatabaseOutage(ctx, backoff=Backoff(60.0, 60.0)).retry(unavailable, stop=stop)
        assert trio.current_time() == pytest.approx(12)  # at the stop, not after the back-off
    assert ctx.not_ready_reason == f"database unavailable: {REASON}"
