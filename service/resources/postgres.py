"""PostgreSQL, for several replicas sharing one job table: psycopg 3 (sync) in worker threads.

Threads, because no maintained Trio-native driver exists and psycopg's async connection is
asyncio-only. Each call takes a connection from a `psycopg_pool.ConnectionPool` in a worker
thread (a `CapacityLimiter` the size of the pool keeps threads from queueing inside it) and
runs `work` between BEGIN and COMMIT. The portable SQL uses `?` placeholders; a thin adapter
hands psycopg its `%s` ones, so no statement is written twice.

Cancellation aborts the statement on the server: the caller's cancellation sends a cancel
request (`cancel_safe`) for the connection its thread holds, the statement fails at once, the
transaction rolls back, and the thread gives its connection back before the caller moves on.
`statement_timeout` bounds what no caller cancels.

The server being down is a state to wait out, not a crash. Opening never fails because the
server is down or unreachable: the schema is migrated on the first connection that works
(under an advisory lock, so replicas starting together do not race), retried in the
background until then. Meanwhile, and whenever a call loses its connection, calls raise
`DatabaseUnavailable` saying why; the pool makes new connections by itself. Only what waiting
cannot fix (a malformed URL, a schema newer than this code, missing privileges) is a plain
`DatabaseError`, which at start-up ends the service with `resource.failed`. Found later by
the migration retried in the background, it (like any failure of the listener) is reported
to the service (`service.resources.failures`), which stops in order: never raised into this
resource's nursery, where it would hard-cancel every worker using the database.

Notifications: a commit with `notify=` sends `NOTIFY` inside its transaction, which the server
delivers at commit to every listening replica. A listener connection (started by the first
`wait_for_notification`, in this resource's own nursery) forwards them to the waiters of this
process and reconnects with backoff when lost. Waiters poll as well, so a notification missed
while the listener was down costs a poll interval, never a job.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from functools import lru_cache, partial
from typing import Any, NoReturn, TypeVar

import outcome
import psycopg
import structlog
import trio
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from service.backoff import Backoff
from service.exception_groups import lone_errors_unwrapped
from service.logs import RateLimitedLog
from service.redaction import mask_url, redact
from service.resources.database import (
    Connection,
    Cursor,
    DatabaseError,
    DatabaseUnavailable,
    Dialect,
    Notifications,
)
from service.resources.failures import report_failure
from service.resources.migrations import migrate
from service.resources.threads import run_interruptible

T = TypeVar("T")
PgConnection = psycopg.Connection[TupleRow]

log = structlog.get_logger("service.resources.postgres")

#: libpq settings applied unless the URL sets them itself (the URL always wins): a bounded
#: connect, a bounded statement, and TCP keepalives that notice a dead peer in about a minute
#: (the listener connection is otherwise silent for as long as nothing is enqueued).
CONNECTION_DEFAULTS = {
    "connect_timeout": "5",
    "options": "-c statement_timeout=30s",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}
#: How long a call waits for a pooled connection before it is unavailable. The pool never
#: runs out (the limiter), so a wait this long means its connections are being re-made.
ACQUIRE_TIMEOUT = 5.0
#: While waiting for a pooled connection, how often a cancelled call notices it.
_ACQUIRE_SLICE = 0.25
#: How long a cancel request may take to reach the server.
CANCEL_TIMEOUT = 5.0
#: The `pg_advisory_xact_lock` key held while migrating: any constant, the same everywhere.
MIGRATION_LOCK = 0x5E4C1CE_0001
#: Retry rhythm of the migration (until the first connection works) and of the listener.
MIGRATION_RETRY = Backoff(0.5, 10.0)
LISTENER_RECONNECT = Backoff(0.5, 10.0)
#: How long a listener connection must stay up before a loss of it starts the backoff anew.
LISTENER_STABLE_S = 30.0
#: At most one `db.listener_down` line per this many seconds.
LISTENER_DOWN_LOG_PERIOD_S = 10.0


def check_url(url: str) -> None:
    """Raise ValueError (never quoting a password) if libpq would reject `url`."""
    try:
        conninfo_to_dict(url)
    except psycopg.Error as exc:
        detail = redact(" ".join(str(exc).split()), url)
        raise ValueError(f"not a valid PostgreSQL URL: {detail}") from None


class PostgresDatabase:
    dialect: Dialect = "postgresql"

    def __init__(
        self,
        url: str,
        conninfo: str,
        pool: ConnectionPool[PgConnection],
        nursery: trio.Nursery,
        *,
        listen: bool,
    ) -> None:
        self.display_url = mask_url(url)
        self._url = url
        self._conninfo = conninfo
        self._pool = pool
        self._limiter = trio.CapacityLimiter(pool.max_size)
        self._notifications = Notifications()
        self._listen = listen
        self._channels: set[str] = set()
        self._listener_wait: trio.CancelScope | None = None
        self._nursery = nursery  # the listener's and the background migration's
        self._migrated = False
        self._not_migrated_because = "not connected yet"

    def now(self) -> float:
        """This machine's clock: replicas' clocks must agree to well within a lease (NTP)."""
        return time.time()

    async def transaction(
        self, work: Callable[[Connection], T], *, notify: str | None = None, read_only: bool = False
    ) -> T:
        # `read_only` asks nothing more here: a PostgreSQL reader never holds a writer back.
        if not self._migrated:
            raise DatabaseUnavailable(
                f"{self.display_url}: the schema is not migrated yet: {self._not_migrated_because}"
            )
        async with self._limiter:
            call = _Call()
            result = await run_interruptible(
                partial(self._pooled, work, notify, call), call.interrupt
            )
        if notify is not None:  # this process's waiters need not wait for the listener
            self._notifications.notify(notify)
        return result

    async def wait_for_notification(self, channel: str) -> None:
        if self._listen and channel not in self._channels:
            self._channels.add(channel)
            if len(self._channels) == 1:
                self._nursery.start_soon(self._in_background, self._listen_forever)
            elif self._listener_wait is not None:
                self._listener_wait.cancel(reason=f"LISTEN {channel} as well")
        await self._notifications.wait(channel)

    async def _in_background(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run one of this resource's own tasks (the migration retried, the listener).

        Its failure is reported to the service, which stops in order; raised, it would cancel
        this resource's nursery and with it every worker using the database, at once.
        """
        try:
            await work()
        except Exception as exc:  # noqa: BLE001  # handed on whole: the service decides
            report_failure("db", exc)

    # -- calls, in worker threads ---------------------------------------------------------

    def _pooled(self, work: Callable[[Connection], T], notify: str | None, call: _Call) -> T:
        try:
            connection = self._acquire(call)
            try:
                return _in_transaction(connection, work, notify, call)
            finally:
                self._pool.putconn(connection)  # a broken one is replaced by the pool
        except PoolTimeout:
            raise DatabaseUnavailable(
                f"{self.display_url}: no connection within {ACQUIRE_TIMEOUT:g}s: "
                f"{self._why_no_connection()}"
            ) from None
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"{self.display_url}: {self._describe(exc)}") from exc

    def _acquire(self, call: _Call) -> PgConnection:
        """A pooled connection; waits in slices, so a cancelled call stops waiting promptly."""
        deadline = time.monotonic() + ACQUIRE_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            try:
                return self._pool.getconn(timeout=max(min(_ACQUIRE_SLICE, remaining), 0.001))
            except PoolTimeout:
                if call.cancelled:
                    raise _Cancelled from None
                if remaining <= _ACQUIRE_SLICE:
                    raise

    def _why_no_connection(self) -> str:
        """What connecting says right now: the reason the pool has no connection to give."""
        try:
            psycopg.connect(self._conninfo).close()
        except psycopg.Error as exc:
            return self._describe(exc)
        return "the pool had no connection ready (it is reconnecting)"

    def _describe(self, error: BaseException) -> str:
        """The driver's message on one line, any password taken out."""
        return redact(" ".join(str(error).split()), self._url)

    # -- migrations -----------------------------------------------------------------------

    async def apply_migrations(self) -> None:
        """Apply missing migrations on a connection of its own, under the advisory lock."""
        call = _Call()
        try:
            await run_interruptible(partial(self._migrate_in_thread, call), call.interrupt)
        except DatabaseUnavailable as exc:
            self._not_migrated_because = str(exc).removeprefix(f"{self.display_url}: ")
            raise
        self._migrated = True

    async def apply_migrations_until_done(self) -> None:
        """In the background, until the server lets the migration through."""
        await self._in_background(self._retry_migrations)

    async def _retry_migrations(self) -> None:
        retries = MIGRATION_RETRY.tracker()
        while not self._migrated:
            await trio.sleep(retries.next_delay())
            with contextlib.suppress(DatabaseUnavailable):
                await self.apply_migrations()

    def _migrate_in_thread(self, call: _Call) -> None:
        def locked_migrate(connection: Connection) -> None:
            # Replicas starting together queue here; the later ones find nothing to do.
            connection.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            migrate(connection)

        try:
            with psycopg.connect(self._conninfo, autocommit=True) as connection:
                _in_transaction(connection, locked_migrate, None, call)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"{self.display_url}: {self._describe(exc)}") from exc
        except psycopg.Error as exc:  # privileges, a broken schema: waiting will not help
            raise DatabaseError(
                f"{self.display_url}: cannot migrate: {self._describe(exc)}"
            ) from exc

    # -- the listener ---------------------------------------------------------------------

    async def _listen_forever(self) -> None:
        """Forward notifications to this process's waiters; reconnect with backoff if lost.

        A server that accepts connections and drops them at once (flapping, or a proxy in
        front of a server that is down) must not make this loop spin: the backoff is reset
        only after a connection stayed up `LISTENER_STABLE_S`, and `db.listener_down` is
        logged at most once per `LISTENER_DOWN_LOG_PERIOD_S` (later lines count the rest).
        """
        # Started from the first waiter's task, with a copy of its context: this task is the
        # resource's, not that worker's (nor that unit of work's), so its lines are too.
        structlog.contextvars.clear_contextvars()
        reconnects = LISTENER_RECONNECT.tracker()
        down = RateLimitedLog(
            log, "db.listener_down", period=LISTENER_DOWN_LOG_PERIOD_S, clock=trio.current_time
        )
        while True:
            connected_at: float | None = None
            try:
                connection = await self._connect_listener()
                connected_at = trio.current_time()
                try:
                    await self._forward(connection)  # returns only by raising
                finally:
                    connection.close()
            except psycopg.Error as exc:
                reason = self._describe(exc)
            if connected_at is not None and trio.current_time() - connected_at >= LISTENER_STABLE_S:
                reconnects.reset()  # it was up long enough: this is a new outage
            delay = reconnects.next_delay()
            down.warning(reason=reason, retry_in_s=round(delay, 3))
            await trio.sleep(delay)

    async def _connect_listener(self) -> PgConnection:
        # Shielded: a connection made must reach its caller, which closes it.
        with trio.CancelScope(shield=True):
            connection = await trio.to_thread.run_sync(
                partial(psycopg.connect, self._conninfo, autocommit=True)
            )
        return connection  # noqa: RET504  # after the scope: mypy knows it may swallow

    async def _forward(self, connection: PgConnection) -> NoReturn:
        fd = connection.fileno()
        listening: set[str] = set()
        try:
            while True:
                # Until none is new: a waiter may add a channel while LISTEN is under way.
                while new := self._channels - listening:
                    await trio.to_thread.run_sync(_listen_to, connection, sorted(new))
                    listening |= new
                    log.info("db.listening", channels=sorted(listening))
                    for channel in new:  # what was sent before LISTEN is missed: look now
                        self._notifications.notify(channel)
                for notification in connection.notifies(timeout=0):  # reads, never waits
                    self._notifications.notify(notification.channel)
                # No checkpoint since the check above: a channel added from now on cancels
                # this wait, and the loop listens to it.
                with trio.CancelScope() as self._listener_wait:
                    await trio.lowlevel.wait_readable(fd)
        finally:
            self._listener_wait = None
            trio.lowlevel.notify_closing(fd)


def _listen_to(connection: PgConnection, channels: Iterable[str]) -> None:
    for channel in channels:
        connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))


class _Cancelled(Exception):
    """Raised in the worker thread to roll back a call whose caller was cancelled."""


def _in_transaction(
    connection: PgConnection, work: Callable[[Connection], T], notify: str | None, call: _Call
) -> T:
    call.hold(connection)
    try:
        with connection.transaction():
            result = work(_Translating(connection))
            if notify is not None:
                connection.execute("SELECT pg_notify(%s, '')", (notify,))
            if call.cancelled:  # a caller that is gone must not find its work committed
                raise _Cancelled
        return result
    finally:
        call.release()


class _Call:
    """One call's hold on a connection, so that cancelling the caller cancels its statement.

    The worker thread takes the lock to hold and release its connection, and the canceller to
    send the cancel request: so a request is never sent for a connection already back in the
    pool, where it would cancel another call's statement.
    """

    def __init__(self) -> None:
        self.cancelled = False
        self._connection: PgConnection | None = None
        self._lock = threading.Lock()

    def hold(self, connection: PgConnection) -> None:
        with self._lock:
            if self.cancelled:
                raise _Cancelled
            self._connection = connection

    def release(self) -> None:
        with self._lock:
            self._connection = None

    def interrupt(self) -> None:
        """On the event loop, when the caller is cancelled: never blocks it."""
        self.cancelled = True
        trio.lowlevel.start_thread_soon(self._send_cancel, _ignore)

    def _send_cancel(self) -> None:
        with self._lock:
            if self._connection is None:
                return  # not connected yet (`cancelled` stops it) or already done
            try:
                self._connection.cancel_safe(timeout=CANCEL_TIMEOUT)
            except psycopg.Error as exc:  # the statement then ends by statement_timeout
                log.warning("db.cancel_failed", reason=" ".join(str(exc).split()))


def _ignore(result: outcome.Outcome[None]) -> None:
    """The cancel thread's outcome: nothing to report (it logs its own failure)."""


@lru_cache(maxsize=512)
def _pyformat(query: str) -> str:
    """`?` placeholders as psycopg's `%s` (and a literal `%` doubled); the portable SQL never
    has a `?` inside a string literal."""
    return query.replace("%", "%%").replace("?", "%s")


class _Translating:
    """A psycopg connection as the `Connection` protocol: the portable SQL's `?` placeholders."""

    __slots__ = ("_connection",)

    def __init__(self, connection: PgConnection) -> None:
        self._connection = connection

    def execute(self, query: str, parameters: Any = None, /) -> Cursor:
        if parameters is None:
            return self._connection.execute(query)
        return self._connection.execute(_pyformat(query), parameters)

    def executemany(self, query: str, parameters: Iterable[Any], /) -> Cursor:
        cursor = self._connection.cursor()
        cursor.executemany(_pyformat(query), parameters)
        return cursor


@asynccontextmanager
async def open_postgres(
    url: str, *, connections: int = 4, listen: bool = True
) -> AsyncIterator[PostgresDatabase]:
    """The database at `url`, opened whether or not the server answers yet.

    `connections` is the pool's size; `listen=False` leaves waiters to polling alone (behind a
    transaction-pooling proxy, where LISTEN does not work).
    """
    try:
        settings = conninfo_to_dict(url)
    except psycopg.Error as exc:
        detail = redact(" ".join(str(exc).split()), url)
        raise DatabaseError(f"{mask_url(url)}: not a valid PostgreSQL URL: {detail}") from None
    defaults = {key: value for key, value in CONNECTION_DEFAULTS.items() if key not in settings}
    conninfo = make_conninfo(url, **defaults)
    pool = ConnectionPool(
        conninfo,
        open=False,
        min_size=connections,
        max_size=connections,
        timeout=ACQUIRE_TIMEOUT,
        kwargs={"autocommit": True},  # transactions are explicit: `connection.transaction()`
        name="db",
    )
    pool.open()  # connects in its own threads, retrying with backoff while the server is down
    try:
        # The nursery wraps even the body's own error: let a lone one out as itself, so that
        # callers catch it as what it is.
        with lone_errors_unwrapped():
            async with trio.open_nursery() as nursery:
                database = PostgresDatabase(url, conninfo, pool, nursery, listen=listen)
                try:
                    await database.apply_migrations()
                except DatabaseUnavailable:
                    nursery.start_soon(database.apply_migrations_until_done)
                yield database
                nursery.cancel_scope.cancel(reason="the database is being closed")
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(pool.close)
