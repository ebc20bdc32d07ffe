"""The SQLite resource: opening, migrations, interruptible transactions, clear failures."""

from __future__ import annotations

import sqlite3
import threading
import time
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from service import Backoff, NoSettings, WorkerContext
from service.outage import DatabaseOutage
from service.resources import DatabaseError, DatabaseUnavailable, migrations, sqlite
from service.resources.database import Connection
from service.resources.sqlite import open_sqlite, parse_url
from tests.conftest import Events

FOREVER = (
    "WITH RECURSIVE forever(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM forever)"
    " SELECT count(*) FROM forever"
)


def tables(connection: Connection) -> set[str]:
    rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {row[0] for row in rows}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///var/service.db", ("file:var/service.db", False)),
        ("sqlite:////srv/data/jobs.db", ("file:/srv/data/jobs.db", False)),
        ("sqlite:///:memory:", (":memory:", True)),
        ("sqlite:///a b.db?mode=ro", ("file:a%20b.db?mode=ro", False)),
    ],
)
def test_urls(url: str, expected: tuple[str, bool]) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize("url", ["postgresql://x/y", "sqlite://host/x.db", "sqlite:///", "x.db"])
def test_bad_urls_are_named_in_the_error(url: str) -> None:
    with pytest.raises(DatabaseError, match="sqlite"):
        parse_url(url)


async def test_first_open_creates_directory_file_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "there.db"
    async with open_sqlite(f"sqlite:///{path}") as db:
        assert {"jobs", "schema_migrations"} <= await db.transaction(tables)
    assert path.exists()


async def test_migrations_apply_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    async with open_sqlite(url):
        pass
    async with open_sqlite(url) as db:
        assert await db.transaction(migrations.migrate) == []
        rows = await db.transaction(
            lambda c: c.execute("SELECT version, name FROM schema_migrations").fetchall()
        )
    assert rows == [(m.version, m.name) for m in migrations.available()]


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    async with open_sqlite(url) as db:
        await db.transaction(
            lambda c: c.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'x', 0)"
            )
        )
    with pytest.raises(DatabaseError, match="newer than this service knows"):
        async with open_sqlite(url):
            pass


async def test_a_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not a database " * 100)
    with pytest.raises(DatabaseError, match="not a SQLite database"):
        async with open_sqlite(f"sqlite:///{path}"):
            pass


async def test_a_read_only_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    sqlite3.connect(path).close()  # exists, but has no schema yet: opening must write
    with pytest.raises(DatabaseError, match="read-only"):
        async with open_sqlite(f"sqlite:///{path}?mode=ro"):
            pass


async def test_a_locked_database_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another process writing, and not letting go
        with pytest.raises(DatabaseError, match="another process holds the lock"):
            async with open_sqlite(f"sqlite:///{path}"):
                pass
    finally:
        holder.close()


async def test_another_process_holding_the_database_past_the_busy_timeout_is_an_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "held.db"
    async with open_sqlite(f"sqlite:///{path}") as db:
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")  # another process writing, and not letting go
            with pytest.raises(DatabaseUnavailable, match="database is locked") as caught:
                await db.transaction(lambda c: c.execute("CREATE TABLE scratch (x)"))
            assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        finally:
            holder.close()
        await db.transaction(lambda c: c.execute("CREATE TABLE scratch (x)"))  # it passed
        assert "scratch" in await db.transaction(tables)


async def test_a_worker_rides_out_another_process_holding_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, events: Events
) -> None:
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "held.db"
    ctx = WorkerContext("writer", NoSettings())
    outage = DatabaseOutage(ctx, backoff=Backoff(0.01, 0.01))
    async with open_sqlite(f"sqlite:///{path}") as db:
        holder = sqlite3.connect(path, isolation_level=None)
        attempts = 0

        async def create() -> object:
            nonlocal attempts
            attempts += 1
            if attempts == 2:  # the other process lets go after the first attempt failed
                holder.rollback()
            return await db.transaction(lambda c: c.execute("CREATE TABLE scratch (x)"))

        try:
            holder.execute("BEGIN EXCLUSIVE")
            await outage.retry(create)
        finally:
            holder.close()
    assert attempts == 2
    [unavailable] = events.named("db.unavailable")
    assert "database is locked" in unavailable["reason"]
    assert events.named("db.available")
    assert ctx.not_ready_reason is None  # ready again


async def test_memory_databases_work_and_are_private(tmp_path: Path) -> None:
    async with open_sqlite("sqlite:///:memory:") as first:
        await first.transaction(lambda c: c.execute("CREATE TABLE mine (x)"))
        async with open_sqlite("sqlite:///:memory:") as second:
            assert "mine" not in await second.transaction(tables)
        assert "mine" in await first.transaction(tables)


async def test_work_that_raises_is_rolled_back() -> None:
    def insert_then_fail(connection: Connection) -> None:
        connection.execute("CREATE TABLE scratch (x)")
        raise ValueError("changed my mind")

    async with open_sqlite("sqlite:///:memory:") as db:
        with pytest.raises(ValueError, match="changed my mind"):
            await db.transaction(insert_then_fail)
        assert "scratch" not in await db.transaction(tables)


async def test_cancellation_interrupts_a_running_query_and_commits_nothing(
    tmp_path: Path,
) -> None:
    def write_then_run_forever(connection: Connection) -> None:
        connection.execute("CREATE TABLE written (x)")
        connection.execute(FOREVER).fetchall()  # never ends unless interrupted

    async with open_sqlite(f"sqlite:///{tmp_path / 'db.sqlite'}", connections=1) as db:
        with trio.move_on_after(0.2) as cancelled:
            await db.transaction(write_then_run_forever)
        assert cancelled.cancelled_caught
        # The one connection came back, usable, and the write before the query was undone.
        assert "written" not in await db.transaction(tables)


async def test_cancellation_between_statements_still_commits_nothing() -> None:
    started = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def slow_python_then_write(connection: Connection) -> None:
        token.run_sync_soon(started.set)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:  # Python work: no statement to interrupt
            pass
        connection.execute("CREATE TABLE late (x)")

    async with open_sqlite("sqlite:///:memory:") as db:
        async with trio.open_nursery() as nursery:

            async def cancel_once_started() -> None:
                await started.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(cancel_once_started)
            await db.transaction(slow_python_then_write)
        assert "late" not in await db.transaction(tables)


async def test_concurrent_transactions_share_the_pool(tmp_path: Path) -> None:
    async with open_sqlite(f"sqlite:///{tmp_path / 'db.sqlite'}", connections=2) as db:
        await db.transaction(lambda c: c.execute("CREATE TABLE n (x INTEGER)"))
        async with trio.open_nursery() as nursery:
            for value in range(20):
                nursery.start_soon(
                    db.transaction, lambda c, v=value: c.execute("INSERT INTO n VALUES (?)", (v,))
                )
        [(count,)] = await db.transaction(lambda c: c.execute("SELECT count(*) FROM n").fetchall())
    assert count == 20


async def test_a_commit_that_notifies_wakes_every_waiter_once() -> None:
    woken: list[int] = []
    async with open_sqlite("sqlite:///:memory:") as db, trio.open_nursery() as nursery:

        async def waiter(number: int) -> None:
            await db.wait_for_notification("jobs")
            woken.append(number)

        for number in range(3):
            nursery.start_soon(waiter, number)
        await trio.testing.wait_all_tasks_blocked()
        await db.transaction(lambda c: None, notify="other")
        await trio.testing.wait_all_tasks_blocked()
        assert woken == []
        await db.transaction(lambda c: None, notify="jobs")
    assert sorted(woken) == [0, 1, 2]


async def test_a_read_only_transaction_holds_no_writer_back(tmp_path: Path) -> None:
    """An operator's `jobs list`, a queue-depth sample: reading while the poller writes."""
    reading, release = threading.Event(), threading.Event()

    def read_slowly(connection: Connection) -> int:
        [count] = connection.execute("SELECT COUNT(*) FROM jobs").fetchone()
        reading.set()
        release.wait(30)
        return int(count)

    async with open_sqlite(f"sqlite:///{tmp_path / 'db.sqlite'}") as db, trio.open_nursery() as n:
        n.start_soon(partial(db.transaction, read_slowly, read_only=True))
        await trio.to_thread.run_sync(reading.wait)
        # A writer behind a write lock would wait out the 5 s busy timeout, then fail.
        with trio.fail_after(sqlite.BUSY_TIMEOUT_MS / 1000 / 2):
            await db.transaction(
                lambda c: (
                    c.execute(
                        "INSERT INTO jobs (id, payload, trace_id, state, available_at, created_at,"
                        " updated_at) VALUES ('j', '{}', 't', 'pending', 0, 0, 0)"
                    ).rowcount
                )
            )
        release.set()
