"""The ticker and the job poller under a real supervisor, on virtual time.

The database runs in threads, which the virtual clock cannot see: `memory_database(clock)`
holds the clock still while any query is on its way, so the tests stay exact on a loaded
machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
import trio
import trio.testing
from pydantic import BaseModel, ConfigDict

import service
from service.jobs import REGISTERED, JobsSettings, JobTable, JobType
from service.observability import metrics
from service.resources import Database
from service.resources.sqlite import open_sqlite
from service.testing import memory_database, provide, supervised, virtual_wall_clock
from service.workers.jobs import jobs
from service.workers.ticker import TickerSettings, ticker
from tests.conftest import Events

Handler = Callable[[Any, Any], Awaitable[None]]


AUTOJUMP = 0.01


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """Requested by every test here: pytest-trio runs a test on a clock it is passed."""
    return trio.testing.MockClock(autojump_threshold=AUTOJUMP)


@pytest.fixture
async def db(clock: trio.testing.MockClock) -> AsyncIterator[Database]:
    async with memory_database(clock) as database:
        yield database


class Anything(BaseModel):
    model_config = ConfigDict(extra="allow")


class Count(BaseModel):
    n: int


def poller_settings(**overrides: Any) -> dict[str, JobsSettings]:
    values = {"lease_seconds": 30.0, "poll_interval": 60.0, "job_timeout": 10.0} | overrides
    return {"jobs": JobsSettings(**values)}


def use_handler(monkeypatch: pytest.MonkeyPatch, handler: Handler, model: Any = Anything) -> None:
    """Job type "test" runs `handler` for this test only."""
    monkeypatch.setitem(REGISTERED, "test", JobType("test", handler, model))


class Turns:
    """Counts the poller's turns: each is one transaction, recording what is done and
    claiming what fits."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        complete_and_claim = JobTable.complete_and_claim

        async def counted(table: JobTable, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await complete_and_claim(table, *args, **kwargs)

        monkeypatch.setattr(JobTable, "complete_and_claim", counted)


async def rows(db: Database) -> list[tuple[str, str, int, str | None]]:
    return await db.transaction(
        lambda c: c.execute(
            "SELECT id, state, attempts, last_error FROM jobs ORDER BY created_at"
        ).fetchall()
    )


async def test_an_enqueue_in_this_process_wakes_the_poller_at_once(
    clock: trio.testing.MockClock, db: Database, monkeypatch: pytest.MonkeyPatch, events: Events
) -> None:
    handled = trio.Event()

    async def record(payload: Any, ctx: Any) -> None:
        handled.set()

    use_handler(monkeypatch, record)
    async with supervised(
        jobs, settings=poller_settings(), resources=[provide(service.db, db)]
    ) as sup:
        await sup.ready.wait()
        await trio.sleep(5)
        enqueued_at = trio.current_time()
        [job_id] = await JobTable(db).enqueue([{"type": "test"}])
        await handled.wait()
        assert trio.current_time() - enqueued_at < 1  # not the 60 s poll
    [done] = events.named("job.done")
    assert done["job_id"] == job_id
    assert done["attempt"] == 1
    assert done["worker"] == "jobs"
    assert await rows(db) == [(job_id, "done", 1, None)]


async def test_jobs_from_another_process_are_found_by_polling_soon_while_they_come(
    clock: trio.testing.MockClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No wake-up crosses processes on SQLite: the poller finds their jobs by polling. After
    a turn that found jobs it looks again within milliseconds, then ever less often, back to
    its interval when none come."""
    started = trio.Event()

    async def record(payload: Any, ctx: Any) -> None:
        started.set()

    use_handler(monkeypatch, record)
    turns = Turns(monkeypatch)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    async with (
        open_sqlite(url, clock=virtual_wall_clock) as ours,
        open_sqlite(url, clock=virtual_wall_clock) as theirs,  # no in-process wake-up
        supervised(
            jobs, settings=poller_settings(poll_interval=5.0), resources=[provide(service.db, ours)]
        ) as sup,
    ):
        await sup.ready.wait()

        async def latency_of_one(after: float) -> float:
            nonlocal started
            await trio.sleep(after)
            started = trio.Event()
            await JobTable(theirs).enqueue([{"type": "test"}])
            enqueued_at = trio.current_time()
            await started.wait()
            return trio.current_time() - enqueued_at

        assert await latency_of_one(after=0) <= 5.0 + 0.5  # found by the interval's poll
        assert await latency_of_one(after=0.2) <= 0.1  # a stream: looked for again soon
        turns.count = 0
        assert await latency_of_one(after=120) <= 5.0 + 0.5  # a lull: back to the interval
    assert turns.count <= 40 + 120 / 5  # the quick looks die down: no busy loop


async def test_an_idle_poller_polls_once_per_interval(
    clock: trio.testing.MockClock, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    turns = Turns(monkeypatch)
    async with supervised(
        jobs, settings=poller_settings(poll_interval=5.0), resources=[provide(service.db, db)]
    ) as sup:
        await sup.ready.wait()
        await trio.sleep(60)
    assert 12 <= turns.count <= 14  # one at start, then one every 5 s: no busy loop


async def test_failures_are_retried_with_backoff_then_dead_lettered(
    clock: trio.testing.MockClock, db: Database, monkeypatch: pytest.MonkeyPatch, events: Events
) -> None:
    async def broken(payload: Any, ctx: Any) -> None:
        raise RuntimeError("downstream refused")

    use_handler(monkeypatch, broken)
    settings = poller_settings(poll_interval=0.5, max_attempts=3, retry_initial=2, retry_cap=4)
    async with supervised(jobs, settings=settings, resources=[provide(service.db, db)]) as sup:
        await sup.ready.wait()
        [job_id] = await JobTable(db).enqueue([{"type": "test"}])
        await trio.sleep(30)
    retries = events.named("job.retrying")
    assert [r["attempt"] for r in retries] == [1, 2]
    assert retries[0]["delay_s"] <= 2.0
    assert retries[1]["delay_s"] <= 4.0
    assert all(r["error"] == "RuntimeError: downstream refused" for r in retries)
    [failed] = events.named("job.failed")
    assert failed["attempt"] == 3
    assert await rows(db) == [(job_id, "failed", 3, "RuntimeError: downstream refused")]


async def test_a_job_over_its_timeout_is_cut_short_and_retried(
    clock: trio.testing.MockClock, db: Database, monkeypatch: pytest.MonkeyPatch, events: Events
) -> None:
    async def hangs(payload: Any, ctx: Any) -> None:
        await trio.sleep_forever()

    use_handler(monkeypatch, hangs)
    settings = poller_settings(job_timeout=5.0, max_attempts=2, retry_initial=0, retry_cap=0)
    async with supervised(jobs, settings=settings, resources=[provide(service.db, db)]) as sup:
        await sup.ready.wait()
        [job_id] = await JobTable(db).enqueue([{"type": "test"}])
        await trio.sleep(30)
    assert [r["error"] for r in events.named("job.retrying")] == ["timed out after 5s"]
    assert await rows(db) == [(job_id, "failed", 2, "timed out after 5s")]


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (
            {"type": "test", "n": "seven"},
            "invalid test payload: n: Input should be a valid integer, unable to parse string"
            " as an integer",
        ),
        ({"type": "test"}, "invalid test payload: n: Field required"),
        ([1, 2, 3], "payload must be a JSON object with a string 'type'"),
        ({"kind": "test"}, "payload must be a JSON object with a string 'type'"),
    ],
)
async def test_a_job_that_cannot_succeed_is_dead_lettered_at_once(  # noqa: PLR0917  # fixtures
    clock: trio.testing.MockClock,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
    events: Events,
    payload: Any,
    error: str,
) -> None:
    async def must_not_run(payload: Count, ctx: Any) -> None:
        raise AssertionError("an invalid payload reached the job")

    use_handler(monkeypatch, must_not_run, Count)
    async with supervised(
        jobs, settings=poller_settings(), resources=[provide(service.db, db)]
    ) as sup:
        await sup.ready.wait()
        [job_id] = await JobTable(db).enqueue([payload])
        await trio.sleep(5)
    assert events.named("job.retrying") == []
    assert await rows(db) == [(job_id, "failed", 1, error)]


async def test_a_type_this_process_does_not_know_is_postponed_never_dead_lettered(
    clock: trio.testing.MockClock, db: Database, events: Events
) -> None:
    """A rolling update: another version's job type reaches a poller that does not know it.
    Postponing it spends no attempt, and the waits grow with its age, up to `retry_cap`."""
    settings = poller_settings(poll_interval=0.5, max_attempts=2, retry_initial=1, retry_cap=4)
    async with supervised(jobs, settings=settings, resources=[provide(service.db, db)]) as sup:
        await sup.ready.wait()
        [job_id] = await JobTable(db).enqueue([{"type": "from_a_newer_version"}])
        await trio.sleep(40)
    unknown = events.named("job.unknown_type")
    assert len(unknown) >= 10  # well past max_attempts, and still not dead-lettered
    assert {e["type"] for e in unknown} == {"from_a_newer_version"}
    assert all(e["delay_s"] <= 4.0 for e in unknown)
    assert events.named("job.failed") == []
    assert await rows(db) == [
        (job_id, "pending", 0, "no job type 'from_a_newer_version' in this process")
    ]


async def test_a_new_job_of_an_unknown_type_is_postponed_briefly_first(
    clock: trio.testing.MockClock, db: Database, events: Events
) -> None:
    """The wait grows with the job's age: a job just enqueued waits at most `retry_initial`,
    not `retry_cap` (the claim must carry when the job was enqueued)."""
    settings = poller_settings(poll_interval=0.5, retry_initial=1, retry_cap=60)
    async with supervised(jobs, settings=settings, resources=[provide(service.db, db)]) as sup:
        await sup.ready.wait()
        ids = await JobTable(db).enqueue([{"type": "from_a_newer_version"}] * 8)
        await trio.sleep(0.5)
    first = {e["job_id"]: e["delay_s"] for e in reversed(events.named("job.unknown_type"))}
    assert first.keys() == set(ids)
    assert all(delay <= 1.0 for delay in first.values()), first


async def test_a_corrupt_stored_payload_is_dead_lettered_with_the_reason(
    clock: trio.testing.MockClock, db: Database
) -> None:
    await JobTable(db).enqueue([{"type": "test"}])
    await db.transaction(lambda c: c.execute("UPDATE jobs SET payload = 'not json'"))
    async with supervised(
        jobs, settings=poller_settings(), resources=[provide(service.db, db)]
    ) as sup:
        await sup.ready.wait()
        await trio.sleep(5)
    [(_, state, _, error)] = await rows(db)
    assert state == "failed"
    assert error is not None
    assert error.startswith("stored payload is not valid JSON")


async def test_a_job_whose_worker_died_is_claimed_again_when_its_lease_expires(
    clock: trio.testing.MockClock, db: Database, monkeypatch: pytest.MonkeyPatch, events: Events
) -> None:
    handled = trio.Event()

    async def ok(payload: Any, ctx: Any) -> None:
        handled.set()

    use_handler(monkeypatch, ok)
    table = JobTable(db)
    [job_id] = await table.enqueue([{"type": "test"}])
    await table.claim(1, lease_seconds=30, owner="a worker that died")
    start = trio.current_time()
    async with supervised(
        jobs, settings=poller_settings(poll_interval=1.0), resources=[provide(service.db, db)]
    ) as sup:
        await sup.ready.wait()
        await handled.wait()
    assert 30 <= trio.current_time() - start <= 32
    [done] = events.named("job.done")
    assert (done["job_id"], done["attempt"]) == (job_id, 2)


async def test_a_job_abandoned_too_often_is_dead_lettered_not_run(
    clock: trio.testing.MockClock, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = False

    async def must_not_run(payload: Any, ctx: Any) -> None:
        nonlocal ran
        ran = True

    use_handler(monkeypatch, must_not_run)
    table = JobTable(db)
    await table.enqueue([{"type": "test"}])
    for owner in ("first", "second"):  # two deliveries whose workers died
        await table.claim(1, lease_seconds=1, owner=owner)
        await trio.sleep(2)
    settings = poller_settings(poll_interval=1.0, max_attempts=2)
    async with supervised(jobs, settings=settings, resources=[provide(service.db, db)]) as sup:
        await sup.ready.wait()
        await trio.sleep(3)
    [(_, state, attempts, error)] = await rows(db)
    assert (state, attempts, ran) == ("failed", 3, False)
    assert error == "abandoned after 2 attempts (lease expired)"


async def test_never_more_jobs_in_flight_than_the_concurrency(
    clock: trio.testing.MockClock, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = most = finished = 0
    all_done = trio.Event()

    async def slow(payload: Any, ctx: Any) -> None:
        nonlocal running, most, finished
        running += 1
        most = max(most, running)
        await trio.sleep(1)
        running -= 1
        finished += 1
        if finished == 10:
            all_done.set()

    use_handler(monkeypatch, slow)
    async with supervised(
        jobs, settings=poller_settings(concurrency=3), resources=[provide(service.db, db)]
    ) as sup:
        await sup.ready.wait()
        await JobTable(db).enqueue([{"type": "test"}] * 10)
        await all_done.wait()
    assert most == 3


async def test_the_soft_stop_lets_jobs_in_flight_finish_within_grace(
    clock: trio.testing.MockClock, db: Database, monkeypatch: pytest.MonkeyPatch, events: Events
) -> None:
    started = trio.Event()

    async def takes_three_seconds(payload: Any, ctx: Any) -> None:
        started.set()
        await trio.sleep(3)

    use_handler(monkeypatch, takes_three_seconds)
    async with supervised(
        jobs, settings=poller_settings(), resources=[provide(service.db, db)]
    ) as sup:
        await sup.ready.wait()
        [job_id] = await JobTable(db).enqueue([{"type": "test"}])
        await started.wait()
        await JobTable(db).enqueue([{"type": "test"}])  # arrives during the stop: not claimed
        stop_at = trio.current_time()
    assert 3 <= trio.current_time() - stop_at < 4  # waited for the job, not the whole grace
    assert [e["outcome"] for e in events.named("worker.exited")] == ["stopped"]
    assert [r[:3] for r in await rows(db)] == [(job_id, "done", 1), (ANY, "pending", 0)]


async def test_a_job_whose_lease_was_taken_over_is_reported_not_recorded(
    clock: trio.testing.MockClock, db: Database, monkeypatch: pytest.MonkeyPatch, events: Events
) -> None:
    """Another worker holds the job now (this one's lease expired while it ran, say in a long
    pause): finishing it here must not mark the other's delivery done."""

    async def loses_its_lease(payload: Any, ctx: Any) -> None:
        await db.transaction(
            lambda c: c.execute("UPDATE jobs SET lease_owner = 'another worker'").rowcount
        )

    use_handler(monkeypatch, loses_its_lease)
    async with supervised(
        jobs, settings=poller_settings(), resources=[provide(service.db, db)]
    ) as sup:
        await sup.ready.wait()
        [job_id] = await JobTable(db).enqueue([{"type": "test"}], trace_id="t" * 32)
        await trio.sleep(1)
    [lost] = events.named("job.lease_lost")
    assert (lost["job_id"], lost["trace_id"], lost["attempt"]) == (job_id, "t" * 32, 1)
    assert [r[:3] for r in await rows(db)] == [(job_id, "leased", 1)]


async def test_the_hard_stop_releases_unfinished_jobs_for_the_next_run(
    clock: trio.testing.MockClock, db: Database, monkeypatch: pytest.MonkeyPatch, events: Events
) -> None:
    started = trio.Event()

    async def takes_too_long(payload: Any, ctx: Any) -> None:
        started.set()
        await trio.sleep(100)

    use_handler(monkeypatch, takes_too_long)
    # Longer than the poller's grace (10 s), so the hard stop comes first.
    settings = poller_settings(job_timeout=20.0)
    async with supervised(jobs, settings=settings, resources=[provide(service.db, db)]) as sup:
        await sup.ready.wait()
        [job_id] = await JobTable(db).enqueue([{"type": "test"}])
        await started.wait()
    assert [e["outcome"] for e in events.named("worker.exited")] == ["cancelled"]
    [released] = events.named("job.released")
    assert released["job_id"] == job_id
    # Given back as it was: due now, and this delivery does not count as an attempt.
    assert await rows(db) == [(job_id, "pending", 0, None)]
    [job] = await JobTable(db).claim(1, lease_seconds=30, owner="the next run")
    assert (job.id, job.attempt) == (job_id, 1)


async def test_the_hard_stop_releases_a_job_cancelled_inside_its_own_nursery(
    clock: trio.testing.MockClock, db: Database, monkeypatch: pytest.MonkeyPatch, events: Events
) -> None:
    """Its `Cancelled` comes out wrapped in the job's nursery's exception group."""
    started = trio.Event()

    async def fans_out(payload: Any, ctx: Any) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep, 100)
            nursery.start_soon(trio.sleep, 100)
            started.set()

    use_handler(monkeypatch, fans_out)
    settings = poller_settings(job_timeout=20.0)
    async with supervised(jobs, settings=settings, resources=[provide(service.db, db)]) as sup:
        await sup.ready.wait()
        [job_id] = await JobTable(db).enqueue([{"type": "test"}])
        await started.wait()
    [released] = events.named("job.released")
    assert released["job_id"] == job_id
    assert await rows(db) == [(job_id, "pending", 0, None)]


async def test_ticks_become_done_jobs_with_the_same_trace_id(
    clock: trio.testing.MockClock, db: Database, events: Events
) -> None:
    settings = {**poller_settings(), "ticker": TickerSettings(interval=2.0)}
    async with supervised(
        jobs, ticker, settings=settings, resources=[provide(service.db, db)]
    ) as sup:
        await sup.ready.wait()
        await trio.sleep(9)
    ticks = events.named("tick")
    assert [t["number"] for t in ticks] == [0, 1, 2, 3, 4]
    done = {e["job_id"]: e for e in events.named("job.done")}
    for tick in ticks:
        assert done[tick["job_id"]]["trace_id"] == tick["trace_id"]
        assert tick["worker"] == "ticker"
    assert len({tick["trace_id"] for tick in ticks}) == 5


async def test_outcomes_and_queue_depth_reach_the_metrics(
    clock: trio.testing.MockClock, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def sample(name: str, **labels: str) -> float:
        return metrics.REGISTRY.get_sample_value(name, labels) or 0.0

    def queued(state: str) -> float:
        return sample("service_jobs_queued", queue="default", state=state, type="test")

    release = trio.Event()

    class MaybeCount(BaseModel):
        n: int | None = None

    async def held(payload: Any, ctx: Any) -> None:
        await release.wait()

    use_handler(monkeypatch, held, MaybeCount)
    done_before = sample("service_jobs_total", outcome="done")
    failed_before = sample("service_jobs_total", outcome="failed")
    settings = poller_settings(poll_interval=1.0, concurrency=1)
    async with supervised(jobs, settings=settings, resources=[provide(service.db, db)]) as sup:
        await sup.ready.wait()
        await JobTable(db).enqueue([{"type": "test"}] * 3 + [{"type": "test", "n": []}])
        await trio.sleep(2.5)
        assert queued("leased") == 1  # one slot, held
        assert queued("pending") == 3
        assert sample("service_jobs_oldest_pending_seconds", queue="default") >= 2
        release.set()
        await trio.sleep(5)
    assert sample("service_jobs_total", outcome="done") - done_before == 3
    assert sample("service_jobs_total", outcome="failed") - failed_before == 1


async def test_done_jobs_are_deleted_after_their_retention_failed_ones_kept(
    clock: trio.testing.MockClock, db: Database, monkeypatch: pytest.MonkeyPatch, events: Events
) -> None:
    async def fails_on_odd(payload: Any, ctx: Any) -> None:
        if payload.n % 2:
            raise RuntimeError("odd")

    use_handler(monkeypatch, fails_on_odd)
    settings = poller_settings(poll_interval=1.0, max_attempts=1, keep_done_seconds=150)
    async with supervised(jobs, settings=settings, resources=[provide(service.db, db)]) as sup:
        await sup.ready.wait()
        await JobTable(db).enqueue([{"type": "test", "n": n} for n in range(6)])
        await trio.sleep(125)  # purges at 60 s and 120 s: nothing old enough yet
        assert sorted(state for _, state, _, _ in await rows(db)) == ["done"] * 3 + ["failed"] * 3
        assert events.named("jobs.purged") == []
        await trio.sleep(60)  # the purge at 180 s: the done ones are past 150 s
    assert [state for _, state, _, _ in await rows(db)] == ["failed"] * 3  # until an operator acts
    [purged] = events.named("jobs.purged")
    assert (purged["state"], purged["count"]) == ("done", 3)


async def test_failed_jobs_are_deleted_too_when_their_retention_is_set(
    clock: trio.testing.MockClock, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fails(payload: Any, ctx: Any) -> None:
        raise RuntimeError("no")

    use_handler(monkeypatch, fails)
    settings = poller_settings(max_attempts=1, keep_failed_seconds=30)
    async with supervised(jobs, settings=settings, resources=[provide(service.db, db)]) as sup:
        await sup.ready.wait()
        await JobTable(db).enqueue([{"type": "test"}] * 2)
        await trio.sleep(61)
    assert await rows(db) == []
