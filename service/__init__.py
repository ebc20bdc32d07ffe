"""A Trio service of supervised, long-lived workers.

Everything a worker module needs is here:

    from service import WorkerContext, worker

    @worker(restart="permanent", grace=5.0)
    async def reporter(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for tick in ctx.every(5.0):
            ctx.log.info("report", tick=tick.number)
"""

from service.backoff import Backoff
from service.logs import new_trace_id, unit_of_work
from service.outage import DatabaseOutage
from service.schedule import Tick, every
from service.worker import NoSettings, RestartType, WorkerContext, WorkerSpec, worker

__all__ = [
    "Backoff",
    "DatabaseOutage",
    "NoSettings",
    "RestartType",
    "Tick",
    "WorkerContext",
    "WorkerSpec",
    "every",
    "new_trace_id",
    "unit_of_work",
    "worker",
]
