"""SQLite, the embedded default: a few connections, each used by one worker thread at a time.

WAL journal (readers never block the writer), `busy_timeout` for short lock waits, and every
transaction that may write `BEGIN IMMEDIATE`, so a writer takes its lock up front instead of
failing halfway; one that only reads (`read_only`) takes no write lock at all.
A cancelled call interrupts its statement (`Connection.interrupt`) and never commits.

Another process holding the database past the busy timeout (a long `BEGIN EXCLUSIVE`, a
backup), and disk I/O errors, pass: a call they fail raises `DatabaseUnavailable`, as an
outage of the PostgreSQL server does, so a worker rides it out (not ready, backing off) the
same way whatever the engine, instead of crashing on `OperationalError`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote, urlsplit

import trio

from service.resources.database import (
    Connection,
    DatabaseError,
    DatabaseUnavailable,
    Dialect,
    Notifications,
)
from service.resources.migrations import migrate
from service.resources.threads import run_interruptible

T = TypeVar("T")

#: How long a statement waits for another connection's (or process's) write lock.
BUSY_TIMEOUT_MS = 5_000

#: Primary result codes of errors that may pass if the call is tried again later: the
#: database busy or a table locked by another connection, a disk I/O error.
TRANSIENT_ERRORS = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR})


class SQLiteDatabase:
    dialect: Dialect = "sqlite"

    def __init__(
        self,
        display_url: str,
        connections: list[sqlite3.Connection],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.display_url = display_url
        self.now = clock
        self._idle = connections
        self._limiter = trio.CapacityLimiter(len(connections))
        self._notifications = Notifications()

    async def transaction(
        self, work: Callable[[Connection], T], *, notify: str | None = None, read_only: bool = False
    ) -> T:
        async with self._limiter:
            connection = self._idle.pop()
            cancelled = threading.Event()

            def interrupt() -> None:
                cancelled.set()
                connection.interrupt()

            try:
                result = await run_interruptible(
                    lambda: _in_transaction(connection, work, cancelled, read_only), interrupt
                )
            except sqlite3.OperationalError as exc:
                if not is_transient(exc):
                    raise
                raise DatabaseUnavailable(f"{self.display_url}: {_explain(exc)}") from exc
            finally:
                self._idle.append(connection)
        if notify is not None:  # committed: other processes have to poll (no server to tell)
            self._notifications.notify(notify)
        return result

    async def wait_for_notification(self, channel: str) -> None:
        await self._notifications.wait(channel)


def is_transient(error: sqlite3.Error) -> bool:
    """Whether `error` may pass by itself: busy, locked, or a disk I/O error."""
    return error.sqlite_errorcode & 0xFF in TRANSIENT_ERRORS  # extended codes keep it below


class _Cancelled(Exception):
    """Raised in the worker thread to roll back a call whose caller was cancelled."""


def _in_transaction(
    connection: sqlite3.Connection,
    work: Callable[[Connection], T],
    cancelled: threading.Event,
    read_only: bool,
) -> T:
    # A reader takes no lock until it reads, and in WAL mode never holds a writer back.
    connection.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")
    try:
        result = work(connection)
        if not cancelled.is_set():  # a caller that is gone must not find its work committed
            connection.execute("COMMIT")
            return result
    finally:
        while connection.in_transaction:  # the interrupt may hit the ROLLBACK itself
            with contextlib.suppress(sqlite3.OperationalError):
                connection.execute("ROLLBACK")
    raise _Cancelled


def parse_url(url: str) -> tuple[str, bool]:
    """`sqlite:///relative.db`, `sqlite:////absolute.db`, `sqlite:///:memory:`, each with an
    optional `?query` of SQLite URI parameters (`?mode=ro`): the URI to open, and whether it is
    an in-memory database."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc or not parts.path.startswith("/"):
        raise DatabaseError(f"{url}: not a SQLite URL (sqlite:///relative/path.db)")
    path = parts.path[1:]
    if path == ":memory:":
        return ":memory:", True
    if not path:
        raise DatabaseError(f"{url}: no database path")
    query = f"?{parts.query}" if parts.query else ""
    return f"file:{quote(path)}{query}", False


@asynccontextmanager
async def open_sqlite(
    url: str, *, connections: int = 4, clock: Callable[[], float] = time.time
) -> AsyncIterator[SQLiteDatabase]:
    """Open (creating the file and its directory on first use) and migrate the database.

    `clock` is the wall clock that leases and retry times are measured on: one machine's
    `time.time` for a file only that machine uses; tests pass a virtual one.
    """
    uri, in_memory = parse_url(url)
    opened = await trio.to_thread.run_sync(_connect, url, uri, 1 if in_memory else connections)
    database = SQLiteDatabase(url, opened, clock)
    try:
        try:
            await database.transaction(migrate)
        except sqlite3.Error as exc:
            raise DatabaseError(f"{url}: {_explain(exc)}") from exc
        yield database
    finally:
        for connection in opened:
            connection.close()


def _connect(url: str, uri: str, count: int) -> list[sqlite3.Connection]:
    if uri.startswith("file:") and "mode=ro" not in uri:
        directory = Path(uri.removeprefix("file:").split("?")[0]).parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"{url}: cannot create {directory}: {exc.strerror}") from exc
    opened: list[sqlite3.Connection] = []
    try:
        for _ in range(count):
            connection = sqlite3.connect(
                uri, uri=uri != ":memory:", isolation_level=None, check_same_thread=False
            )
            opened.append(connection)
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA foreign_keys = ON")
            if uri != ":memory:" and "mode=ro" not in uri:
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error as exc:
        for connection in opened:
            connection.close()
        raise DatabaseError(f"{url}: {_explain(exc)}") from exc
    return opened


def _explain(error: sqlite3.Error) -> str:
    message = str(error)
    hints = {
        "unable to open database file": "the file or its directory cannot be opened",
        "file is not a database": "the file is not a SQLite database (corrupt, or another file)",
        "database is locked": f"another process holds the lock for over {BUSY_TIMEOUT_MS} ms",
        "readonly database": "the database is read-only",
    }
    for needle, hint in hints.items():
        if needle in message:
            return f"{message} ({hint})"
    return message
