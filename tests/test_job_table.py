"""The job table's semantics, on a clock the test moves by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from service.jobs import Job, JobTable, MalformedPayload
from service.resources import Database
from service.resources.database import Connection, Cursor
from service.resources.sqlite import open_sqlite

T = TypeVar("T")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def db(clock: Clock) -> AsyncIterator[Database]:
    async with open_sqlite("sqlite:///:memory:", clock=clock) as database:
        yield database


@pytest.fixture
def table(db: Database) -> JobTable:
    return JobTable(db)


async def state_of(db: Database, job_id: str) -> tuple[str, int, str | None]:
    [row] = await db.transaction(
        lambda c: c.execute(
            "SELECT state, attempts, last_error FROM jobs WHERE id = ?", (job_id,)
        ).fetchall()
    )
    return tuple(row)  # type: ignore[return-value]


async def test_enqueue_then_claim_in_order_with_payload_and_trace_id(table: JobTable) -> None:
    ids = await table.enqueue([{"n": 1}, {"n": 2}, {"n": 3}], trace_id="t-1")
    claimed = await table.claim(2, lease_seconds=30, owner="a")
    assert claimed == [Job(ids[0], {"n": 1}, "t-1", 1), Job(ids[1], {"n": 2}, "t-1", 1)]
    assert [job.id for job in await table.claim(5, lease_seconds=30, owner="b")] == [ids[2]]
    assert await table.claim(5, lease_seconds=30, owner="c") == []


async def test_each_job_gets_its_own_trace_id_unless_given(table: JobTable) -> None:
    await table.enqueue([{}, {}])
    first, second = await table.claim(2, lease_seconds=30, owner="a")
    assert first.trace_id != second.trace_id
    assert len(first.trace_id) == 32


async def test_complete_marks_done_and_stats_count_states(table: JobTable) -> None:
    await table.enqueue([{}, {}, {}])
    first, _ = await table.claim(2, lease_seconds=30, owner="a")
    assert await table.complete([first], owner="a") == {first.id}
    assert await table.stats() == {"pending": 1, "leased": 1, "done": 1, "failed": 0}


async def test_an_expired_lease_is_claimed_again_and_the_old_owner_cannot_settle(
    table: JobTable, clock: Clock
) -> None:
    [job_id] = await table.enqueue([{}])
    [lost] = await table.claim(1, lease_seconds=30, owner="dead")
    clock.now += 29
    assert await table.claim(1, lease_seconds=30, owner="live") == []
    clock.now += 2
    [again] = await table.claim(1, lease_seconds=30, owner="live")
    assert (again.id, again.attempt) == (job_id, 2)
    assert await table.complete([lost], owner="dead") == set()
    assert await table.complete([again], owner="live") == {job_id}


async def test_expired_leases_come_first_and_the_claim_keeps_to_its_limit(
    table: JobTable, clock: Clock
) -> None:
    abandoned = await table.enqueue([{}, {}])
    await table.claim(2, lease_seconds=30, owner="dead")
    clock.now += 31
    due = await table.enqueue([{}, {}], priority=9)
    first = await table.claim(3, lease_seconds=30, owner="live")
    assert {job.id for job in first} == {*abandoned, due[0]}
    assert [job.id for job in await table.claim(3, lease_seconds=30, owner="live")] == [due[1]]


#: What the poller does again and again, and the indexes each must read (the primary key's
#: for the rows picked): none may scan the table, sort more than the backlog, or read an
#: index that holds the finished jobs.
POLLER_QUERIES: dict[str, tuple[Callable[[JobTable], Awaitable[object]], set[str]]] = {
    "claim": (
        lambda table: table.claim(10, lease_seconds=30, owner="a"),
        {"jobs_leased", "jobs_due", "sqlite_autoindex_jobs_1"},
    ),
    "complete_and_claim": (
        lambda table: table.complete_and_claim(
            [Job("x", {}, "t", 1)], 10, lease_seconds=30, owner="a"
        ),
        {"jobs_leased", "jobs_due", "sqlite_autoindex_jobs_1"},
    ),
    "depth": (lambda table: table.depth(), {"jobs_leased", "jobs_due"}),
    "purge_done": (
        lambda table: table.purge("done", older_than=60, limit=10),
        {"jobs_done", "sqlite_autoindex_jobs_1"},
    ),
    "purge_failed": (
        lambda table: table.purge("failed", older_than=60, limit=10),
        {"jobs_failed", "sqlite_autoindex_jobs_1"},
    ),
    "enqueue_with_key": (lambda table: table.enqueue([{}], key="k"), {"jobs_dedupe"}),
}


@pytest.mark.parametrize("query", POLLER_QUERIES)
async def test_what_the_poller_repeats_reads_indexes_whatever_the_table_holds(
    db: Database, table: JobTable, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    """The cost of a claim, a depth sample or a purge must not grow with the finished jobs
    kept for a week, nor a claim's with the backlog (SQLite's plans; PostgreSQL has the same
    indexes)."""
    await table.enqueue([{}], key="k")  # so the key's lookup runs too
    statements: list[tuple[str, Any]] = []
    transaction = db.transaction

    async def recorded(work: Callable[[Connection], T], **options: Any) -> T:
        return await transaction(lambda c: work(Recorder(c, statements)), **options)

    monkeypatch.setattr(db, "transaction", recorded)
    run, indexes = POLLER_QUERIES[query]
    await run(table)
    monkeypatch.undo()
    reads = [(sql, parameters) for sql, parameters in statements if not sql.startswith("INSERT")]
    assert reads
    steps = []
    for sql, parameters in reads:
        steps += await db.transaction(
            lambda c, sql=sql, parameters=parameters: [
                row[-1] for row in c.execute(f"EXPLAIN QUERY PLAN {sql}", parameters).fetchall()
            ]
        )
    scans = [step for step in steps if step.startswith("SCAN jobs") and "jobs_leased" not in step]
    assert not scans, steps  # the leased jobs are the pollers' slots: few, whatever is kept
    assert not [step for step in steps if "TEMP B-TREE FOR ORDER BY" in step], steps
    read = {step.split(" INDEX ")[1].split()[0] for step in steps if " INDEX " in step}
    assert read == indexes, steps


@dataclass
class Recorder:
    """A connection that notes each statement it runs."""

    connection: Connection
    statements: list[tuple[str, Any]]

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        self.statements.append((sql, parameters))
        return self.connection.execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor:
        raise NotImplementedError


async def test_complete_takes_many_at_once_and_skips_lost_leases(
    table: JobTable, clock: Clock
) -> None:
    await table.enqueue([{}] * 1_200)  # more ids than one statement binds
    mine = await table.claim(1_200, lease_seconds=30, owner="a")
    clock.now += 31  # every lease of "a" expires; "b" takes one of the jobs over
    [stolen] = await table.claim(1, lease_seconds=30, owner="b")
    done = await table.complete(mine, owner="a")
    assert done == {job.id for job in mine} - {stolen.id}
    assert await table.stats() == {"pending": 0, "leased": 1, "done": 1_199, "failed": 0}


async def test_retry_waits_for_its_delay_and_keeps_the_error(
    db: Database, table: JobTable, clock: Clock
) -> None:
    [job_id] = await table.enqueue([{}])
    [job] = await table.claim(1, lease_seconds=30, owner="a")
    assert await table.retry(job, "ValueError: boom", delay=10, owner="a")
    assert await state_of(db, job_id) == ("pending", 1, "ValueError: boom")
    clock.now += 9
    assert await table.claim(1, lease_seconds=30, owner="a") == []
    clock.now += 1
    [again] = await table.claim(1, lease_seconds=30, owner="a")
    assert again.attempt == 2


async def test_fail_dead_letters_with_the_error(db: Database, table: JobTable) -> None:
    [job_id] = await table.enqueue([{}])
    [job] = await table.claim(1, lease_seconds=30, owner="a")
    assert await table.fail(job, "no handler for job type 'x'", owner="a")
    assert await state_of(db, job_id) == ("failed", 1, "no handler for job type 'x'")
    assert await table.claim(1, lease_seconds=30, owner="a") == []


async def test_release_gives_the_job_back_without_spending_an_attempt(
    db: Database, table: JobTable
) -> None:
    [job_id] = await table.enqueue([{}])
    [job] = await table.claim(1, lease_seconds=30, owner="a")
    assert await table.release(job, owner="a")
    assert await state_of(db, job_id) == ("pending", 0, None)
    [again] = await table.claim(1, lease_seconds=30, owner="b")
    assert again.attempt == 1


async def test_payloads_that_are_not_json_are_refused_before_anything_is_written(
    table: JobTable,
) -> None:
    with pytest.raises(MalformedPayload, match="not JSON-serializable"):
        await table.enqueue([{"ok": 1}, {"bad": object()}])
    with pytest.raises(MalformedPayload):
        await table.enqueue([float("nan")])
    assert await table.stats() == {"pending": 0, "leased": 0, "done": 0, "failed": 0}


async def test_a_corrupt_stored_payload_is_delivered_as_malformed_not_lost(
    db: Database, table: JobTable
) -> None:
    [job_id] = await table.enqueue([{}])
    await db.transaction(
        lambda c: c.execute("UPDATE jobs SET payload = '{broken' WHERE id = ?", (job_id,))
    )
    [job] = await table.claim(1, lease_seconds=30, owner="a")
    assert isinstance(job.payload, MalformedPayload)
    assert "not valid JSON" in str(job.payload)


async def test_a_delayed_job_is_not_claimed_before_it_is_due(table: JobTable, clock: Clock) -> None:
    [later] = await table.enqueue([{"n": 1}], delay=60)
    [now] = await table.enqueue([{"n": 2}])
    assert [job.id for job in await table.claim(5, lease_seconds=300, owner="a")] == [now]
    clock.now += 59
    assert await table.claim(5, lease_seconds=300, owner="a") == []
    clock.now += 1
    assert [job.id for job in await table.claim(5, lease_seconds=300, owner="a")] == [later]


async def test_higher_priority_is_claimed_first_among_due_jobs(
    table: JobTable, clock: Clock
) -> None:
    [low] = await table.enqueue([{}])
    clock.now += 1
    [high] = await table.enqueue([{}], priority=5)
    [not_due] = await table.enqueue([{}], priority=9, delay=10)
    claimed = await table.claim(5, lease_seconds=30, owner="a")
    assert [job.id for job in claimed] == [high, low]
    assert not_due not in {job.id for job in claimed}


async def test_a_key_keeps_one_pending_or_running_job_until_it_is_done(
    table: JobTable, db: Database
) -> None:
    [first] = await table.enqueue([{"n": 1}], key="k")
    assert await table.enqueue([{"n": 2}], key="k") == [first]  # pending: deduplicated
    [job] = await table.claim(1, lease_seconds=30, owner="a")
    assert await table.enqueue([{"n": 3}], key="k") == [first]  # running: still
    [other] = await table.enqueue([{"n": 4}], key="other")
    assert other != first
    await table.complete([job], owner="a")
    [second] = await table.enqueue([{"n": 5}], key="k")  # done: a new one may come
    assert second != first
    assert await db.transaction(lambda c: c.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]) == 3


async def test_a_key_goes_with_exactly_one_payload(table: JobTable) -> None:
    with pytest.raises(ValueError, match="exactly one payload"):
        await table.enqueue([{}, {}], key="k")


async def test_purge_deletes_old_finished_jobs_in_bounded_batches(
    table: JobTable, clock: Clock, db: Database
) -> None:
    old = await table.enqueue([{"n": n} for n in range(5)])
    claimed = await table.claim(5, lease_seconds=30, owner="a")
    await table.complete(claimed[:4], owner="a")
    await table.fail(claimed[4], "broken", owner="a")
    clock.now += 100
    [recent] = await table.enqueue([{}])
    await table.complete(await table.claim(1, lease_seconds=30, owner="a"), owner="a")
    [pending] = await table.enqueue([{}])
    clock.now += 10

    assert await table.purge("done", older_than=50, limit=3) == 3
    assert await table.purge("done", older_than=50, limit=3) == 1  # the old ones: 4 in all
    assert await table.purge("done", older_than=50, limit=3) == 0
    left = {
        row[0]
        for row in await db.transaction(lambda c: c.execute("SELECT id FROM jobs").fetchall())
    }
    assert left == {old[4], recent, pending}  # the failed one is kept, as is what is new
    assert await table.purge("failed", older_than=50, limit=10) == 1
    with pytest.raises(ValueError, match="only finished jobs"):
        await table.purge("pending", older_than=0, limit=10)


async def test_depth_counts_pending_and_leased_only_per_type(table: JobTable, clock: Clock) -> None:
    await table.enqueue([{"type": "a"}, {"type": "a"}, {"type": "b"}, {"kind": "none"}])
    [done, _still_leased] = await table.claim(2, lease_seconds=30, owner="a")
    await table.complete([done], owner="a")
    await table.enqueue([{"type": "b"}], delay=60)  # not due: waits, but not late
    clock.now += 7
    depth = await table.depth()
    assert depth.jobs == {("a", "leased"): 1, ("b", "pending"): 2, (None, "pending"): 1}
    assert (depth.count("pending"), depth.count("leased")) == (3, 1)
    assert depth.oldest_wait == 7
    assert await table.stats() == {"pending": 3, "leased": 1, "done": 1, "failed": 0}
