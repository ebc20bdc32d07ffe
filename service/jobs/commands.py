"""`python -m service jobs ...`: the job table from the command line, for operators."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from service.jobs.table import JobState, JobTable
from service.registry import ServiceConfig
from service.resources import Database, open_database


async def enqueue(config: ServiceConfig, count: int, payload: Any) -> dict[str, int]:
    """Add `count` jobs with this payload, each with its own trace id."""
    async with _database(config) as db:
        ids = await JobTable(db).enqueue([payload] * count)
    return {"enqueued": len(ids)}


async def stats(config: ServiceConfig) -> dict[JobState, int]:
    async with _database(config) as db:
        return await JobTable(db).stats()


def _database(config: ServiceConfig) -> AbstractAsyncContextManager[Database]:
    return open_database(config.resource_settings["db"])
