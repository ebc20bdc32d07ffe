"""A Trio service of supervised, long-lived workers: the public API.

Everything a project's modules need is here (and in `service.testing` for their tests);
every other module of `service` is the template's internals, free to change between releases.

    from service import WorkerContext, worker

    @worker(restart="permanent", grace=5.0)
    async def reporter(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for tick in ctx.every(5.0):
            ctx.log.info("report", tick=tick.number)
"""

from service import metrics
from service.backoff import Backoff
from service.config import NoSettings
from service.jobs import JobContext, JobsSettings, JobType, job, job_poller
from service.logs import RateLimitedLog, new_trace_id, unit_of_work
from service.outage import DatabaseOutage
from service.resources import Database, DatabaseUnavailable, Resource, Resources, db, resource
from service.resources.websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    connect_websocket,
    split_url,
)
from service.schedule import Tick, every
from service.worker import RestartType, WorkerContext, WorkerSpec, worker

__all__ = [
    "Backoff",
    "ConnectionClosed",
    "Database",
    "DatabaseOutage",
    "DatabaseUnavailable",
    "HandshakeError",
    "JobContext",
    "JobType",
    "JobsSettings",
    "NoSettings",
    "RateLimitedLog",
    "Resource",
    "Resources",
    "RestartType",
    "Tick",
    "WebSocketConnection",
    "WorkerContext",
    "WorkerSpec",
    "connect_websocket",
    "db",
    "every",
    "job",
    "job_poller",
    "metrics",
    "new_trace_id",
    "resource",
    "split_url",
    "unit_of_work",
    "worker",
]
