"""my_worker: a job type, durable work that workers defer.

A worker that `uses=[db]` defers one:
`await my_worker.defer(ctx.db, payload)`,
with `delay=` (seconds), `key=` (while a job with that key is pending, deferring another gives
its id) and `priority=` (higher first). It runs at least once, in a process that runs a job
poller (`job_poller()` from `service`): make the work idempotent. An exception or the timeout
retries it with backoff, up to `max_attempts`; then it is dead-lettered, kept as `failed`
(`python -m service jobs list --state failed`). The payload travels as JSON and is validated
against its model before the function runs; what the job needs, it declares in `uses=[...]`
and gets with `ctx.use(...)`.

Import this module in `service/app.py`: every process that runs a job poller must know the type.
"""

from __future__ import annotations

from pydantic import BaseModel

from service import JobContext, job


class MyWorkerPayload(BaseModel):
    """What one job carries: ids and small values, not whole objects that change meanwhile."""

    item_id: str


@job(max_attempts=5, timeout=30.0)
async def my_worker(payload: MyWorkerPayload, ctx: JobContext) -> None:
    """One job's work, in a unit of work with the trace id of the code that deferred it."""
    ctx.log.info("my_worker.done", item_id=payload.item_id, attempt=ctx.attempt)
