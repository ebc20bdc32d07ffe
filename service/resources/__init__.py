"""Shared resources: opened once by the runtime for the workers that use them.

A worker names what it needs (`@worker(uses=("db",))`); the runtime opens those before the
first of them starts and closes them after the last has stopped, in reverse order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from service.config import POSTGRES_SCHEMES, DatabaseSettings, Settings
from service.resources.database import Database, DatabaseError, DatabaseUnavailable
from service.resources.sqlite import open_sqlite

#: Every resource a worker may name in `uses`.
RESOURCE_NAMES = ("db",)

__all__ = [
    "RESOURCE_NAMES",
    "Database",
    "DatabaseError",
    "DatabaseUnavailable",
    "Resources",
    "open_database",
    "open_resources",
]


@dataclass(frozen=True, slots=True)
class Resources:
    """The opened resources; a resource nobody uses is None."""

    db: Database | None = None


@asynccontextmanager
async def open_resources(names: Collection[str], settings: Settings) -> AsyncIterator[Resources]:
    async with AsyncExitStack() as stack:
        db = None
        if "db" in names:
            db = await stack.enter_async_context(open_database(settings.db))
        yield Resources(db=db)


def open_database(settings: DatabaseSettings) -> AbstractAsyncContextManager[Database]:
    """The database `settings.url` names: PostgreSQL for `postgresql://` (or `postgres://`),
    else SQLite (the scheme was checked when the settings were read)."""
    if settings.url.partition(":")[0] in POSTGRES_SCHEMES:
        # Imported here: the driver costs ~90 ms at start-up, SQLite users never pay it.
        from service.resources.postgres import open_postgres  # noqa: PLC0415

        return open_postgres(settings.url, listen=settings.listen)
    return open_sqlite(settings.url)
