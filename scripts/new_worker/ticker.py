"""my_worker: periodic work, each tick a unit of work of its own.

A periodic worker, the shape of the ticker example: `ctx.every` keeps the ticks on a fixed
grid, so the work's own time never shifts them, and ends the loop at the soft stop, so a tick
in progress finishes and no new one starts. A tick that overruns the next deadline skips it
rather than piling ticks up (`tick.skipped` counts them). Each tick is a unit of work with a
trace id of its own, carried by every log line it writes. The work goes in `run_once`.
"""

from __future__ import annotations

import trio
from pydantic import BaseModel, ConfigDict, Field

from service import Tick, WorkerContext, unit_of_work, worker


class MyWorkerSettings(BaseModel):
    """Settings, from the environment (`SERVICE_MY_WORKER__<KEY>`)
    or from the `[my_worker]` table of the TOML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval: float = Field(default=5.0, gt=0, allow_inf_nan=False, description="seconds")


async def run_once(ctx: WorkerContext[MyWorkerSettings], tick: Tick) -> None:
    """One tick's work. An exception crashes the worker, which is then restarted by policy."""
    ctx.log.info(
        "my_worker.tick",
        number=tick.number,
        lateness_ms=round(tick.lateness * 1000, 3),
        skipped=tick.skipped,
    )


@worker(grace=5.0, settings=MyWorkerSettings)
async def my_worker(
    ctx: WorkerContext[MyWorkerSettings],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    task_status.started()
    async for tick in ctx.every(ctx.settings.interval):
        with unit_of_work():
            await run_once(ctx, tick)
