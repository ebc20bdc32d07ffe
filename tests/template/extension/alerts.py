"""A project's own module, as a user would add it: a resource, a typed job, a metric, a worker.

The template test copies it into a generated project as `service/workers/alerts.py` and
imports it from `service/app.py` alone: nothing of the template is edited. It imports nothing
of `service` but its public face. The alerts go to a file (a real service would call an API),
so the test can read what was sent, and that the resource was torn down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio
from pydantic import BaseModel, ConfigDict, Field

from service import (
    JobContext,
    WorkerContext,
    db,
    job,
    metrics,
    resource,
    unit_of_work,
    worker,
)

SENT = metrics.counter("alerts_sent_total", "Alerts sent.", labels=["city"])


class Outbox:
    """Where alerts go: one line each, appended to a file."""

    def __init__(self, path: trio.Path, prefix: str) -> None:
        self._path = path
        self._prefix = prefix

    async def send(self, text: str) -> None:
        async with await self._path.open("a", encoding="utf-8") as file:
            await file.write(f"{self._prefix} {text}\n")


class OutboxSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    prefix: str = "ALERT"


@resource(settings=OutboxSettings)
async def outbox(settings: OutboxSettings) -> AsyncIterator[Outbox]:
    box = Outbox(trio.Path(settings.path), settings.prefix)
    await box.send("opened")
    try:
        yield box
    finally:
        with trio.CancelScope(shield=True):  # closed on every way out, a cancellation too
            await box.send("closed")


class Alert(BaseModel):
    city: str


@job(uses=[outbox], max_attempts=3, timeout=10.0)
async def send_alert(payload: Alert, ctx: JobContext) -> None:
    await ctx.use(outbox).send(payload.city)
    SENT.labels(city=payload.city).inc()
    ctx.log.info("alert.sent", city=payload.city)


class AlertsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cities: list[str] = Field(min_length=1)
    interval: float = Field(default=60.0, gt=0)


@worker(uses=[db], settings=AlertsSettings)
async def alerts(
    ctx: WorkerContext[AlertsSettings],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    task_status.started()
    async for _ in ctx.every(ctx.settings.interval):
        for city in ctx.settings.cities:
            with unit_of_work():  # its trace id travels with the job
                job_id = await send_alert.defer(ctx.db, Alert(city=city), key=city)
                ctx.log.info("alert.deferred", city=city, job_id=job_id)
