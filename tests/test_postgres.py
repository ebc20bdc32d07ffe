"""The PostgreSQL resource against a real server (started by the suite, see postgres_fixtures).

Transactions and their rollback, cancellation that aborts the statement on the server, claims
that skip each other's rows, LISTEN/NOTIFY between two "replicas" (two `Database` objects),
migrations under the advisory lock, outages at start-up and mid-run, and a password that
never shows. Real sockets and real time: every wait is bounded, nothing asserts on timing.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import quote

import psycopg
import pytest
import trio
import trio.testing

from service import Backoff, WorkerContext, db, worker
from service.jobs import JobTable
from service.resources import DatabaseError, DatabaseSettings, DatabaseUnavailable, migrations
from service.resources import postgres as postgres_module
from service.resources.database import Connection
from service.resources.postgres import PostgresDatabase, open_postgres
from service.runtime.service import Service
from service.testing.inprocess import service_config
from service.testing.postgres import PASSWORD, PostgresCluster
from tests.conftest import Events

T = TypeVar("T")

#: The bound on every wait: far above what each step needs, far below "hangs".
PATIENCE = 15.0


def no_secret(text: str) -> bool:
    return PASSWORD not in text and quote(PASSWORD, safe="") not in text


async def query(url: str, sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
    """Run one statement on a connection of the test's own (autocommit), outside the service."""

    def run() -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True) as connection:
            cursor = connection.execute(sql, parameters)
            return cursor.fetchall() if cursor.description else []

    return await trio.to_thread.run_sync(run)


async def eventually(operation: Callable[[], Awaitable[T]]) -> T:
    """`operation()` once the database is available to it again (bounded)."""
    with trio.fail_after(PATIENCE):
        while True:
            try:
                return await operation()
            except DatabaseUnavailable:
                await trio.sleep(0.1)


async def until(condition: Callable[[], bool]) -> None:
    """Poll (bounded) for what only polling can see: log lines, the server's own tables."""
    with trio.fail_after(PATIENCE):
        while True:
            if condition():
                return
            await trio.sleep(0.02)


def tables(connection: Connection) -> set[str]:
    rows = connection.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    ).fetchall()
    return {row[0] for row in rows}


# -- migrations --------------------------------------------------------------------------------


async def test_replicas_opening_together_migrate_once(pg_url: str) -> None:
    async def open_and_close() -> None:
        async with open_postgres(pg_url, connections=1) as db:
            assert {"jobs", "schema_migrations"} <= await db.transaction(tables)

    async with trio.open_nursery() as nursery:
        for _ in range(4):  # without the advisory lock, their CREATE TABLEs collide
            nursery.start_soon(open_and_close)
    rows = await query(pg_url, "SELECT version, name FROM schema_migrations ORDER BY version")
    assert rows == [(m.version, m.name) for m in migrations.available()]


async def test_a_newer_schema_is_an_error_not_an_outage(pg_url: str) -> None:
    async with open_postgres(pg_url) as db:
        await db.transaction(
            lambda c: c.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'x', 0)"
            )
        )
    with pytest.raises(DatabaseError, match="newer than this service knows") as caught:
        async with open_postgres(pg_url):
            pass
    assert not isinstance(caught.value, DatabaseUnavailable)


# -- transactions ------------------------------------------------------------------------------


async def test_work_that_raises_is_rolled_back(pg_url: str) -> None:
    def create_then_fail(connection: Connection) -> None:
        connection.execute("CREATE TABLE scratch (x INTEGER)")
        raise ValueError("changed my mind")

    async with open_postgres(pg_url) as db:
        with pytest.raises(ValueError, match="changed my mind"):
            await db.transaction(create_then_fail)
        assert "scratch" not in await db.transaction(tables)


async def test_the_portable_placeholders_and_a_literal_percent(pg_url: str) -> None:
    def insert_and_read(connection: Connection) -> list[Any]:
        connection.execute("CREATE TABLE words (word TEXT)")
        connection.executemany("INSERT INTO words (word) VALUES (?)", [("50",), ("75",)])
        return connection.execute(
            "SELECT word || '%' FROM words WHERE word <> ? ORDER BY word", ("75",)
        ).fetchall()

    async with open_postgres(pg_url) as db:
        assert await db.transaction(insert_and_read) == [("50%",)]


async def test_cancellation_aborts_the_statement_on_the_server_and_commits_nothing(
    pg_url: str,
) -> None:
    token = trio.lowlevel.current_trio_token()
    sleeping = trio.Event()
    guard_fired = False

    def write_then_sleep(connection: Connection) -> None:
        connection.execute("CREATE TABLE written (x INTEGER)")
        token.run_sync_soon(sleeping.set)
        connection.execute("SELECT pg_sleep(3600)")

    async def guard() -> None:
        """If the cancellation never reached the server, end the sleep, and fail the test."""
        nonlocal guard_fired
        await trio.sleep(PATIENCE)
        guard_fired = True
        await query(
            pg_url,
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
            " WHERE query = 'SELECT pg_sleep(3600)'",
        )

    async with open_postgres(pg_url, connections=1) as db, trio.open_nursery() as outer:
        outer.start_soon(guard)
        async with trio.open_nursery() as caller:
            caller.start_soon(db.transaction, write_then_sleep)
            await sleeping.wait()
            await until_sleeping_on_the_server(pg_url)
            caller.cancel_scope.cancel()
        outer.cancel_scope.cancel()
        assert not guard_fired, "the cancelled statement ran on until the guard ended it"
        # The one connection is back and usable, and the write before the sleep was undone.
        assert "written" not in await db.transaction(tables)
    assert await sleeping_on_the_server(pg_url) == 0


async def sleeping_on_the_server(url: str) -> int:
    [(count,)] = await query(
        url,
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE query = 'SELECT pg_sleep(3600)' AND state = 'active'",
    )
    return int(count)


async def until_sleeping_on_the_server(url: str) -> None:
    with trio.fail_after(PATIENCE):
        while True:
            if await sleeping_on_the_server(url):
                return
            await trio.sleep(0.02)


async def test_cancellation_between_statements_commits_nothing(pg_url: str) -> None:
    token = trio.lowlevel.current_trio_token()
    working = trio.Event()
    proceed = threading.Event()

    def work_then_write(connection: Connection) -> None:
        connection.execute("SELECT 1")
        token.run_sync_soon(working.set)
        proceed.wait(PATIENCE)  # Python work between statements: nothing to cancel on the server
        connection.execute("CREATE TABLE late (x INTEGER)")

    async with open_postgres(pg_url) as db:
        caller = trio.CancelScope()

        async def call() -> None:
            with caller:
                await db.transaction(work_then_write)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            await working.wait()
            caller.cancel()
            await trio.testing.wait_all_tasks_blocked()  # interrupted, waiting for its thread
            proceed.set()
        assert caller.cancelled_caught
        assert "late" not in await db.transaction(tables)


async def test_statements_time_out_and_the_url_can_say_how_soon(pg_url: str) -> None:
    async with open_postgres(pg_url) as db:
        [setting] = await db.transaction(lambda c: c.execute("SHOW statement_timeout").fetchall())
        assert setting == ("30s",)
    async with open_postgres(f"{pg_url}?options=-c%20statement_timeout%3D100") as db:
        with pytest.raises(DatabaseUnavailable, match="statement timeout"):
            await db.transaction(lambda c: c.execute("SELECT pg_sleep(10)"))


# -- claims across replicas --------------------------------------------------------------------


async def test_replicas_claiming_together_never_get_the_same_job(pg_url: str) -> None:
    claimed: list[str] = []
    async with open_postgres(pg_url) as first, open_postgres(pg_url) as second:
        ids = await JobTable(first).enqueue([{"n": n} for n in range(600)])

        async def claim_until_empty(table: JobTable, owner: str) -> None:
            while batch := await table.claim(7, lease_seconds=60, owner=owner):
                claimed.extend(job.id for job in batch)

        async with trio.open_nursery() as nursery:
            for number, db in enumerate([first, second] * 4):
                nursery.start_soon(claim_until_empty, JobTable(db), f"claimer-{number}")
    assert len(claimed) == len(set(claimed)), "a job was claimed twice"
    assert set(claimed) == set(ids)


async def test_a_claim_skips_rows_locked_elsewhere_instead_of_waiting(pg_url: str) -> None:
    async with open_postgres(pg_url) as db:
        table = JobTable(db)
        held, free = await table.enqueue([{"n": 0}, {"n": 1}])
        with psycopg.connect(pg_url) as other:  # not autocommit: the lock lasts until rollback
            other.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (held,))
            with trio.fail_after(PATIENCE):  # without SKIP LOCKED, the claim waits right here
                claimed = await table.claim(2, lease_seconds=60, owner="me")
            other.rollback()
        assert [job.id for job in claimed] == [free]


async def test_one_replica_at_a_time_purges_old_jobs(pg_url: str) -> None:
    async with open_postgres(pg_url) as db:
        table = JobTable(db)
        await table.enqueue([{"n": n} for n in range(3)])
        await table.complete(await table.claim(3, lease_seconds=60, owner="me"), owner="me")
        with psycopg.connect(pg_url) as other:  # another replica, in the middle of its purge
            other.execute("SELECT pg_advisory_xact_lock(7316411562)")
            with trio.fail_after(PATIENCE):  # skips its turn at once, never waits
                assert await table.purge("done", older_than=-1, limit=10) is None
            other.rollback()
        assert await table.purge("done", older_than=-1, limit=2) == 2
        assert (await table.depth()).jobs == {}
        assert (await table.stats())["done"] == 1


# -- notifications across replicas -------------------------------------------------------------


async def test_an_enqueue_in_one_replica_wakes_a_poller_in_another(
    pg_url: str, events: Events
) -> None:
    async with (
        open_postgres(pg_url) as producer,
        open_postgres(pg_url) as consumer,
        trio.open_nursery() as nursery,
    ):
        # The first waiter starts the listener (and is woken once it listens: anything sent
        # before was missed, so look now); the one after it waits for a notification.
        nursery.start_soon(consumer.wait_for_notification, "jobs")
        await until(lambda: bool(events.named("db.listening", channels=["jobs"])))
        woken = trio.Event()

        async def waiter() -> None:
            await JobTable(consumer).wait_for_enqueue()
            woken.set()

        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        await JobTable(producer).enqueue([{"n": 1}])
        with trio.fail_after(PATIENCE):
            await woken.wait()
        nursery.cancel_scope.cancel()


# -- outages -----------------------------------------------------------------------------------


async def test_a_server_that_is_down_is_an_outage_not_an_error(postgres: PostgresCluster) -> None:
    with trio.socket.socket() as probe:  # a port nothing listens on
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = postgres.url().replace(f":{postgres.port}/", f":{port}/")
    async with open_postgres(url) as db:  # opening does not fail
        with pytest.raises(DatabaseUnavailable, match="not migrated yet") as caught:
            await JobTable(db).stats()
    message = str(caught.value)
    assert "refused" in message
    assert db.display_url in message
    assert "***" in db.display_url
    assert no_secret(message)
    assert no_secret(db.display_url)


async def test_a_restarting_server_is_ridden_out_and_the_listener_comes_back(
    private_postgres: PostgresCluster, events: Events
) -> None:
    cluster = private_postgres
    url = cluster.url()
    await trio.to_thread.run_sync(cluster.stop)
    async with (
        open_postgres(url) as producer,
        open_postgres(url) as consumer,
        trio.open_nursery() as nursery,
    ):
        # Down at start-up: every call is unavailable, and says why.
        with pytest.raises(DatabaseUnavailable) as down_at_start:
            await JobTable(producer).stats()
        nursery.start_soon(consumer.wait_for_notification, "jobs")  # starts the listener
        await until(lambda: bool(events.named("db.listener_down")))
        await trio.to_thread.run_sync(cluster.start)
        assert await eventually(JobTable(producer).stats) == dict.fromkeys(
            ("pending", "leased", "done", "failed"), 0
        )  # migrated in the background, once it could connect
        await until(lambda: len(events.named("db.listening")) == 1)

        # Lost mid-run: calls fail until the pool has connected again.
        await trio.to_thread.run_sync(cluster.stop)
        with pytest.raises(DatabaseUnavailable) as lost:
            await JobTable(producer).stats()
        await trio.to_thread.run_sync(cluster.start)
        await eventually(JobTable(producer).stats)

        # The listener reconnected by itself: notifications cross replicas again.
        await until(lambda: len(events.named("db.listening")) == 2)
        woken = trio.Event()

        async def waiter() -> None:
            await JobTable(consumer).wait_for_enqueue()
            woken.set()

        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        await eventually(lambda: JobTable(producer).enqueue([{"n": 1}]))
        with trio.fail_after(PATIENCE):
            await woken.wait()
        nursery.cancel_scope.cancel()
    reasons = [str(down_at_start.value), str(lost.value)]
    reasons += [line["reason"] for line in events.named("db.listener_down")]
    assert all(no_secret(reason) for reason in reasons), reasons


# -- URLs --------------------------------------------------------------------------------------


async def test_a_malformed_url_is_an_error_that_does_not_quote_the_password() -> None:
    url = "postgresql://user:se%zzcret@localhost/db"  # not valid percent-encoding
    with pytest.raises(DatabaseError) as caught:
        async with open_postgres(url):
            pass
    assert not isinstance(caught.value, DatabaseUnavailable)
    assert "se%zzcret" not in str(caught.value)
    assert "invalid percent-encoded token" in str(caught.value)


# -- the resource's background work failing ----------------------------------------------------


@worker(uses=[db], grace=10)
async def listening(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
    """Starts the listener (the first waiter does), then stops at the soft stop."""
    task_status.started()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ctx.db.wait_for_notification, "jobs")
        await ctx.stopping.wait()
        nursery.cancel_scope.cancel(reason="the soft stop")


async def run_service(pg_url: str) -> int:
    config = replace(
        service_config(listening), resource_settings={"db": DatabaseSettings(url=pg_url)}
    )
    service = Service(config, forced_exit=False)
    with trio.fail_after(PATIENCE):
        return await service.run()


async def test_a_listener_that_fails_stops_the_service_in_order_with_exit_1(
    pg_url: str, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: object, connection: object) -> None:
        raise RuntimeError("a bug in the listener")

    monkeypatch.setattr(PostgresDatabase, "_forward", broken)
    assert await run_service(pg_url) == 1  # unexpected: not "bad configuration or usage"
    [failed] = events.named("resource.failed")
    assert failed["resource"] == "db"
    assert failed["error"] == "RuntimeError: a bug in the listener"
    [stopping] = events.named("service.stopping")
    assert stopping["reason"] == "resource db failed"
    [exited] = events.named("worker.exited")
    assert exited["outcome"] == "stopped"  # the soft stop, not a hard cancel


async def test_a_migration_refused_in_the_background_stops_the_service_in_order_with_exit_2(
    pg_url: str, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server was down at start-up; when it answers, it refuses the migration (no
    privileges): what waiting cannot fix, as at start-up, but through the ordered stop."""
    answers = iter(
        [DatabaseUnavailable("connection refused"), DatabaseError("cannot migrate: permission")]
    )

    async def migrate(self: PostgresDatabase) -> None:
        await trio.lowlevel.checkpoint()
        raise next(answers)

    monkeypatch.setattr(PostgresDatabase, "apply_migrations", migrate)
    monkeypatch.setattr(postgres_module, "MIGRATION_RETRY", Backoff(0.01, 0.01))
    assert await run_service(pg_url) == 2
    [failed] = events.named("resource.failed")
    assert failed["error"] == "cannot migrate: permission"
    assert events.named("service.stopping")[0]["reason"] == "resource db failed"
    [exited] = events.named("worker.exited")
    assert exited["outcome"] == "stopped"
