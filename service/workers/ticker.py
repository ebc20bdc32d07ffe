"""The ticker: every `SERVICE_TICKER__INTERVAL` seconds, defer a `tick` job and say so.

The shape of any periodic worker: `ctx.every` keeps the ticks on a fixed grid (the loop body's
own time never shifts them) and ends the loop at the soft stop. Each tick is a unit of work
with its own trace id, which travels in the job row, so the `job.done` of the job it deferred
carries the same one. While the database is unavailable, a tick waits for it (not ready,
backing off); ticks missed meanwhile are skipped, as `ctx.every` skips any overrun.
"""

from __future__ import annotations

from functools import partial

import trio
from pydantic import BaseModel, ConfigDict, Field

from service import (
    DatabaseOutage,
    DatabaseUnavailable,
    JobContext,
    WorkerContext,
    db,
    job,
    metrics,
    unit_of_work,
    worker,
)

LATENESS = metrics.histogram(
    "service_ticker_lateness_seconds",
    "How late each tick fired after its deadline.",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
)


class TickerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    interval: float = Field(default=2.0, gt=0, allow_inf_nan=False, description="seconds")


class Tick(BaseModel):
    number: int


@job()
async def tick(payload: Tick, ctx: JobContext) -> None:
    """What a tick does, durably, in the job poller. Real work goes here: call a service, ..."""


@worker(uses=[db], grace=5.0, settings=TickerSettings)
async def ticker(
    ctx: WorkerContext[TickerSettings],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    outage = DatabaseOutage(ctx)
    task_status.started()
    async for due in ctx.every(ctx.settings.interval):
        LATENESS.observe(due.lateness)
        with unit_of_work():
            defer = partial(tick.defer, ctx.db, Tick(number=due.number))
            try:
                job_id = await outage.retry(defer, stop=ctx.stopping)
            except DatabaseUnavailable as exc:
                ctx.log.warning("tick.not_enqueued", number=due.number, reason=str(exc))
                return  # the soft stop began while waiting for the database
            ctx.log.info(
                "tick",
                job_id=job_id,
                number=due.number,
                lateness_ms=round(due.lateness * 1000, 3),
                skipped=due.skipped,
            )
