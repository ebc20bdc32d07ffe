"""The ticker: every `SERVICE_TICKER__INTERVAL` seconds, enqueue a job and say so.

The shape of any periodic worker: `ctx.every` keeps the ticks on a fixed grid (the loop body's
own time never shifts them) and ends the loop at the soft stop. Each tick is a unit of work
with its own trace id, which travels in the job row, so the `job.done` of the job it enqueued
carries the same one.
"""

from __future__ import annotations

import trio
from pydantic import BaseModel, ConfigDict, Field

from service import WorkerContext, unit_of_work, worker
from service.jobs import JobTable


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
    task_status.started()
    async for tick in ctx.every(ctx.settings.interval):
        with unit_of_work() as trace_id:
            [job_id] = await table.enqueue(
                [{"type": "tick", "tick": tick.number}], trace_id=trace_id
            )
            ctx.log.info(
                "tick",
                job_id=job_id,
                number=tick.number,
                lateness_ms=round(tick.lateness * 1000, 3),
                skipped=tick.skipped,
            )
