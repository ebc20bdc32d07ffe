"""my_worker: polls a source for work, each item a task of its own.

A poller, the shape of the jobs example: it asks the source for at most as many items as it
has free slots (`concurrency`), does each one under `item_timeout` as a unit of work with a
trace id of its own, and polls again every `poll_interval` seconds, or at once when a slot
frees up. At the soft stop it asks for nothing more and lets the items in flight finish
within its grace period.

The source goes in `fetch` (a table, a queue, an API; where it can, claim each item with a
lease, so that an item whose worker died is delivered again) and the work in `process`.
"""

from __future__ import annotations

from typing import Any

import trio
from pydantic import BaseModel, ConfigDict, Field
from structlog.typing import FilteringBoundLogger

from service import WorkerContext, unit_of_work, worker


class MyWorkerSettings(BaseModel):
    """Settings, from the environment (`SERVICE_MY_WORKER__<KEY>`)
    or from the `[my_worker]` table of the TOML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    poll_interval: float = Field(default=1.0, gt=0, allow_inf_nan=False, description="seconds")
    concurrency: int = Field(default=10, ge=1, description="items in flight at once")
    item_timeout: float = Field(default=10.0, gt=0, allow_inf_nan=False, description="seconds")


async def fetch(limit: int) -> list[Any]:
    """Up to `limit` items of work from the source; an empty list when there is none."""
    return []


async def process(item: Any, log: FilteringBoundLogger) -> None:
    """One item's work. An exception (or the timeout) is logged, and the next item goes on."""
    log.info("my_worker.processed", item=repr(item))


@worker(grace=10.0, settings=MyWorkerSettings)
async def my_worker(
    ctx: WorkerContext[MyWorkerSettings],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    settings = ctx.settings
    in_flight = 0
    wakeup = trio.Event()  # a slot came free, or the soft stop began

    async def run(item: Any) -> None:
        nonlocal in_flight
        try:
            with unit_of_work():
                try:
                    with trio.fail_after(settings.item_timeout):
                        await process(item, ctx.log)
                except Exception:  # one failed item must not stop the others
                    ctx.log.exception("my_worker.failed", item=repr(item))
        finally:
            in_flight -= 1
            wakeup.set()

    async def wake_at_the_soft_stop() -> None:
        await ctx.stopping.wait()
        wakeup.set()

    # The items in flight run in `running`: they outlive the polling loop, within the grace.
    async with trio.open_nursery() as running:
        running.start_soon(wake_at_the_soft_stop)
        task_status.started()
        while not ctx.stopping.is_set():
            if free := settings.concurrency - in_flight:
                for item in await fetch(free):
                    in_flight += 1
                    running.start_soon(run, item)
            with trio.move_on_after(settings.poll_interval):
                await wakeup.wait()
            wakeup = trio.Event()
