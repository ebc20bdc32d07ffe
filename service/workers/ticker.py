"""The ticker: every `SERVICE_TICKER__INTERVAL` seconds, enqueue a job and say so.

The shape of any periodic worker: `ctx.every` keeps the ticks on a fixed grid (the loop body's
own time never shifts them) and ends the loop at the soft stop. Each tick is a unit of work
with its own trace id, which travels in the job row, so the `job.done` of the job it enqueued
carries the same one. While the database is unavailable, a tick waits for it (not ready,
backing off); ticks missed meanwhile are skipped, as `ctx.every` skips any overrun.
"""

from __future__ import annotations

from functools import partial

import trio
from pydantic import BaseModel, ConfigDict, Field

from service import WorkerContext, unit_of_work, worker
from service.jobs import JobTable
from service.observability import metrics
from service.outage import DatabaseOutage
from service.resources import DatabaseUnavailable


class TickerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    interval: float = Field(default=2.0, gt=0, allow_inf_nan=False, description="seconds")


@worker(uses=("db",), grace=5.0, settings=TickerSettings)
async def ticker(
    ctx: WorkerContext[TickerSettings],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    table = JobTable(ctx.db)
    outage = DatabaseOutage(ctx)
    task_status.started()
    async for tick in ctx.every(ctx.settings.interval):
        metrics.TICKER_LATENESS.observe(tick.lateness)
        with unit_of_work() as trace_id:
            enqueue = partial(
                table.enqueue, [{"type": "tick", "tick": tick.number}], trace_id=trace_id
            )
            try:
                [job_id] = await outage.retry(enqueue, stop=ctx.stopping)
            except DatabaseUnavailable as exc:
                ctx.log.warning("tick.not_enqueued", number=tick.number, reason=str(exc))
                return  # the soft stop began while waiting for the database
            ctx.log.info(
                "tick",
                job_id=job_id,
                number=tick.number,
                lateness_ms=round(tick.lateness * 1000, 3),
                skipped=tick.skipped,
            )
