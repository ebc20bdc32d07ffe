"""Shared resources: opened once by the runtime for the workers that use them.

A worker names what it needs (`@worker(uses=("db",))`); the runtime opens those before the
first of them starts and closes them after the last has stopped, in reverse order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from service.config import Settings
from service.resources.database import Database, DatabaseError
from service.resources.sqlite import open_sqlite

#: Every resource a worker may name in `uses`.
RESOURCE_NAMES = ("db",)

__all__ = ["RESOURCE_NAMES", "Database", "DatabaseError", "Resources", "open_resources"]


@dataclass(frozen=True, slots=True)
class Resources:
    """The opened resources; a resource nobody uses is None."""

    db: Database | None = None


@asynccontextmanager
async def open_resources(names: Collection[str], settings: Settings) -> AsyncIterator[Resources]:
    async with AsyncExitStack() as stack:
        db = None
        if "db" in names:
            db = await stack.enter_async_context(open_database(settings.db.url))
        yield Resources(db=db)


def open_database(url: str) -> AbstractAsyncContextManager[Database]:
    """The database at `url` (the URL's scheme was checked when the settings were read)."""
    return open_sqlite(url)
