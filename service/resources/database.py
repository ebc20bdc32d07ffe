"""What workers and the job table need of a database, whatever the engine behind it.

A `Database` runs a function against a connection in a worker thread, inside a transaction:
committed if the function returns, rolled back if it raises or the caller is cancelled (a
cancelled call does not commit; only a cancellation that arrives while the COMMIT itself is
on its way can be too late). Blocking drivers (sqlite3, psycopg) stay in threads, and the
event loop never waits on the network or the disk.

SQL is written once, in the portable subset both engines share, with `?` placeholders; the
few statements that must differ ask `dialect`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol, TypeVar

import trio

T = TypeVar("T")

Dialect = Literal["sqlite", "postgresql"]


class Cursor(Protocol):
    """The slice of a DB-API cursor the queries here use."""

    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> list[Any]: ...

    def fetchone(self) -> Any: ...


class Connection(Protocol):
    """The slice of a DB-API connection the queries here use (sqlite3 and psycopg alike)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor: ...


class DatabaseError(Exception):
    """The database cannot be used: unreachable, unwritable, corrupt, or of a newer schema."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot serve this call now, but may soon: the server is down, restarting
    or unreachable, the connection was lost, a statement timed out. Nothing was committed
    unless the connection was lost during the COMMIT itself, so retrying may repeat work
    that was in fact done: what is retried must tolerate that (the job table's delivery is
    at least once anyway). The message says why, with any password masked."""


class Database(Protocol):
    #: The SQL dialect, for the few statements that differ between engines.
    dialect: Dialect
    #: The URL with any password masked: safe to log.
    display_url: str

    def now(self) -> float:
        """Wall-clock seconds as this database's users agree on them (leases outlive us)."""
        ...

    async def transaction(
        self, work: Callable[[Connection], T], *, notify: str | None = None, read_only: bool = False
    ) -> T:
        """Run `work(connection)` in a thread, in one transaction.

        With `notify`, once the transaction has committed, wake every
        `wait_for_notification(notify)` of this process, and (PostgreSQL) of every other
        process using the same database. `read_only`: `work` only reads, so the transaction
        need not hold writers back (SQLite takes no write lock for it; a PostgreSQL reader
        never does).
        """
        ...

    async def wait_for_notification(self, channel: str) -> None:
        """Until the next commit that notifies `channel` (best effort: poll as well)."""
        ...


class Notifications:
    """In-process notification channels: a waiter wakes at the first notify after it began."""

    def __init__(self) -> None:
        self._events: dict[str, trio.Event] = {}

    def notify(self, channel: str) -> None:
        event = self._events.pop(channel, None)
        if event is not None:
            event.set()

    async def wait(self, channel: str) -> None:
        event = self._events.get(channel)
        if event is None:
            event = self._events[channel] = trio.Event()
        await event.wait()
