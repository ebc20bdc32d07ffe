"""Concurrent enqueues share a transaction, and each learns the fate of its own rows."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest
import trio
import trio.testing

from service.jobs import JobTable
from service.resources import Database, DatabaseUnavailable
from service.resources.database import Connection, Dialect
from service.resources.sqlite import open_sqlite

T = TypeVar("T")


class Counting:
    """A database that counts its transactions, and can fail them or hang the next one."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.dialect = db.dialect
        self.display_url = db.display_url
        self.now = db.now
        self.transactions = 0
        self.failing = False
        self.hang_next = False
        self.hung: trio.lowlevel.Task | None = None  # the caller whose transaction hangs

    async def transaction(
        self, work: Callable[[Connection], T], *, notify: str | None = None, read_only: bool = False
    ) -> T:
        self.transactions += 1
        if self.hang_next:
            self.hang_next = False
            self.hung = trio.lowlevel.current_task()
            await trio.sleep_forever()
        if self.failing:
            await trio.lowlevel.checkpoint()
            raise DatabaseUnavailable("the disk is gone")
        return await self._db.transaction(work, notify=notify, read_only=read_only)

    async def wait_for_notification(self, channel: str) -> None:
        await self._db.wait_for_notification(channel)


@pytest.fixture
async def db() -> AsyncIterator[Counting]:
    async with open_sqlite("sqlite:///:memory:") as database:
        yield Counting(database)


async def stored(db: Counting) -> set[str]:
    rows = await db.transaction(lambda c: c.execute("SELECT id FROM jobs").fetchall())
    return {row[0] for row in rows}


async def test_enqueues_made_together_share_one_transaction(db: Counting) -> None:
    ids: list[str] = []

    async def enqueue(n: int) -> None:
        ids.extend(await JobTable(db).enqueue([{"n": n}]))

    async with trio.open_nursery() as nursery:
        for n in range(50):
            nursery.start_soon(enqueue, n)
    assert db.transactions <= 2  # the first alone at most, then everyone who came meanwhile
    assert await stored(db) == set(ids)
    assert len(ids) == 50


async def test_a_failed_commit_fails_every_enqueue_of_its_group(db: Counting) -> None:
    db.failing = True
    failures: list[str] = []

    async def enqueue(n: int) -> None:
        try:
            await JobTable(db).enqueue([{"n": n}])
        except DatabaseUnavailable as exc:
            failures.append(str(exc))

    async with trio.open_nursery() as nursery:
        for n in range(5):
            nursery.start_soon(enqueue, n)
    assert failures == ["the disk is gone"] * 5
    db.failing = False
    [job_id] = await JobTable(db).enqueue([{}])
    assert await stored(db) == {job_id}  # none of the failed ones came in with it


async def test_when_the_committer_is_cancelled_the_next_member_commits_the_group(
    db: Counting,
) -> None:
    """The commit hangs until its caller gives up: another member of the group commits it,
    the cancelled caller's row included (as a statement cancelled while committing may)."""
    ids: dict[int, str] = {}
    scopes = [trio.CancelScope() for _ in range(4)]
    members: dict[trio.lowlevel.Task, int] = {}

    async def enqueue(n: int) -> None:
        members[trio.lowlevel.current_task()] = n
        with scopes[n]:
            [ids[n]] = await JobTable(db).enqueue([{"n": n}])

    db.hang_next = True
    async with trio.open_nursery() as nursery:
        for n in range(4):
            nursery.start_soon(enqueue, n)
        await trio.testing.wait_all_tasks_blocked()
        assert db.hung is not None
        cancelled = members[db.hung]
        scopes[cancelled].cancel()
    assert sorted(ids) == sorted(set(range(4)) - {cancelled})
    assert db.transactions == 2
    stored_payloads = await db.transaction(
        lambda c: c.execute("SELECT payload FROM jobs").fetchall()
    )
    assert sorted(json.loads(row[0])["n"] for row in stored_payloads) == [0, 1, 2, 3]


async def test_a_database_that_cannot_be_a_key_still_takes_enqueues(db: Counting) -> None:
    """A fake database written as a dataclass is unhashable: its enqueues are not grouped,
    and they work."""

    @dataclass(eq=True)
    class Unhashable:
        inner: Counting
        dialect: Dialect = "sqlite"
        display_url: str = "fake"

        def now(self) -> float:
            return self.inner.now()

        async def transaction(
            self,
            work: Callable[[Connection], T],
            *,
            notify: str | None = None,
            read_only: bool = False,
        ) -> T:
            return await self.inner.transaction(work, notify=notify, read_only=read_only)

        async def wait_for_notification(self, channel: str) -> None:
            await self.inner.wait_for_notification(channel)

    fake = Unhashable(db)
    [job_id] = await JobTable(fake).enqueue([{}])
    assert await stored(db) == {job_id}
