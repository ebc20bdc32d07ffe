"""The job poller: claims due jobs and runs each in its own task, under a per-job timeout.

It wakes at once when a job is enqueued in this process (or, on PostgreSQL, in any other), and
otherwise polls: 10 ms after a turn that found jobs, then less and less often, up to every
`poll_interval` seconds; no busy loop. It never runs more than
`concurrency` jobs at once, and records the jobs done in the same transaction as its next
claim. A job that fails is retried with backoff, up to its `max_attempts`, then
dead-lettered with its error; a job that cannot succeed (a malformed payload, one that fails
its model's validation) is dead-lettered at once. A job of a type this process does not know
is retried with backoff instead: a newer replica may know it. At the soft stop the poller claims
nothing more and lets the jobs in flight finish within its grace period; a job cut short by the
hard stop gives its lease back, so a restart picks it up at once instead of after the lease
expires.

While the database is unavailable (PostgreSQL down, restarting, unreachable) the poller is not
ready and backs off instead of crashing: claims wait, and the outcome of a job that finished
meanwhile is recorded once the database is back. A job whose outcome never gets recorded
(the hard stop came first) keeps its lease, and is delivered again when the lease expires.

Delivery is at least once: a job must tolerate running again (say, after a crash).
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Self

import trio
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from structlog.typing import FilteringBoundLogger

from service.backoff import Backoff
from service.exception_groups import is_cancelled
from service.jobs.job import REGISTERED, TYPE_KEY, JobContext, JobType
from service.jobs.table import DEFAULT_QUEUE, Job, JobState, JobTable, MalformedPayload
from service.logs import unit_of_work
from service.metrics import counter, gauge
from service.outage import DatabaseOutage
from service.resources import DatabaseUnavailable, Resources
from service.worker import WorkerContext, WorkerSpec

JOBS = counter(
    "service_jobs",
    "Jobs finished, by outcome (done, failed, retried; postponed: of a type unknown here).",
    labels=["outcome"],
)
#: Each outcome's counter, looked up once rather than per job.
OUTCOMES = {
    outcome: JOBS.labels(outcome=outcome) for outcome in ("done", "failed", "retried", "postponed")
}
JOBS_QUEUED = gauge(
    "service_jobs_queued",
    "Jobs waiting or running, by queue, state (pending, leased) and type.",
    labels=["queue", "state", "type"],
)
OLDEST_WAIT = gauge(
    "service_jobs_oldest_pending_seconds",
    "How long the oldest due job of a queue has waited to start.",
    labels=["queue"],
)


class JobsSettings(BaseModel):
    """`SERVICE_JOBS__*`: the poller's own settings; a job type may set its own attempts and
    timeout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lease_seconds: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    poll_interval: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    concurrency: int = Field(default=64, ge=1, description="jobs in flight at most")
    job_timeout: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    max_attempts: int = Field(default=5, ge=1)
    retry_initial: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    retry_cap: float = Field(default=60.0, ge=0, allow_inf_nan=False)
    keep_done_seconds: float = Field(
        default=7 * 24 * 3600.0, ge=0, allow_inf_nan=False, description="then deleted"
    )
    keep_failed_seconds: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="None: until an operator acts"
    )

    @model_validator(mode="after")
    def _timeout_within_lease(self) -> Self:
        # A job still running when its lease expires is handed to another worker as well.
        if self.job_timeout >= self.lease_seconds:
            raise ValueError("job_timeout must be shorter than lease_seconds")
        return self


#: How long one attempt to record a job's outcome may take, even during the hard stop.
SETTLE_SECONDS = 5.0

#: How soon a poller looks again after a turn that found jobs, and how much longer it waits
#: after each turn that found none, up to its poll interval: a second at most between jobs
#: enqueued by another process on SQLite (which has no cross-process wake-up) would be the
#: latency of a steady stream of them.
HURRIED_POLL = 0.01
POLL_GROWTH = 1.15

#: How often finished jobs past their retention are deleted.
PURGE_EVERY = 60.0


def job_poller(
    *, name: str = "jobs", queue: str = DEFAULT_QUEUE, grace: float = 10.0
) -> WorkerSpec[JobsSettings]:
    """A worker that runs the job types of `queue`; its settings are `SERVICE_<NAME>__*`.

    It uses the database and every resource those job types use, so the runtime opens them
    before it starts and closes them after it has stopped. One poller per queue: each has its
    own concurrency, so a flood of one queue's jobs cannot starve another's.
    """

    async def poll(
        ctx: WorkerContext[JobsSettings],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await _poll(ctx, queue, task_status=task_status)

    return _PollerSpec(
        name=name, run=poll, settings=JobsSettings, uses=("db",), grace=grace, queue=queue
    )


@dataclass(frozen=True, slots=True)
class _PollerSpec(WorkerSpec[JobsSettings]):
    queue: str = DEFAULT_QUEUE

    def job_types(self) -> list[JobType[Any]]:
        return [job_type for job_type in REGISTERED.values() if job_type.queue == self.queue]

    def needs(self) -> tuple[str, ...]:
        used = {name for job_type in self.job_types() for name in job_type.uses}
        return (*self.uses, *sorted(used - set(self.uses)))

    def problems_with(self, settings: JobsSettings) -> list[str]:
        # A job still running when its lease expires is handed to another worker as well.
        return [
            f"job {job_type.name!r}: timeout {job_type.timeout:g}s must be shorter than"
            f" the {self.name} poller's lease_seconds ({settings.lease_seconds:g}s)"
            for job_type in self.job_types()
            if job_type.timeout is not None and job_type.timeout >= settings.lease_seconds
        ]


async def _poll(
    ctx: WorkerContext[JobsSettings], queue: str, *, task_status: trio.TaskStatus[None]
) -> None:
    await _Poller(ctx, queue).run(task_status)


class _Poller:
    """One queue's claim loop and the jobs it runs.

    Each turn is one transaction: it records every job done since the last turn and claims
    as many jobs as there are free slots. Under load that is one round trip and one commit
    per turn, however many jobs finished; a turn comes when a job finishes, a job is
    enqueued, or the poll interval passes. After the soft stop, turns only record what
    finishes, until nothing is in flight.
    """

    def __init__(self, ctx: WorkerContext[JobsSettings], queue: str) -> None:
        settings = ctx.settings
        self.ctx = ctx
        self.queue = queue
        self.table = JobTable(ctx.db)
        self.owner = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.outage = DatabaseOutage(ctx)
        self.process = _Processing(
            self.table,
            self.owner,
            settings,
            Backoff(settings.retry_initial, settings.retry_cap),
            self.outage,
            ctx.log,
            ctx.resources,
        )
        self.wakeup = _Wakeup()
        self.in_flight = 0
        self.finished: list[Job] = []  # done, not recorded yet
        self.recording: list[Job] = []  # done, being recorded by the turn under way

    async def run(self, task_status: trio.TaskStatus[None]) -> None:
        ctx = self.ctx
        # `running` holds the jobs in flight: they outlive the claim loop and its `watchers`.
        async with trio.open_nursery() as running, trio.open_nursery() as watchers:
            watchers.start_soon(self._wake_on_enqueue)
            watchers.start_soon(self._wake_on_stop)
            watchers.start_soon(_report_queue_depth, ctx, self.table, self.queue)
            watchers.start_soon(_purge_finished_jobs, ctx, self.table)
            task_status.started()
            try:
                poll = ctx.settings.poll_interval
                while True:
                    claimed = await self._turn(running)
                    if ctx.stopping.is_set() and not (self.in_flight or self.finished):
                        break
                    # Jobs enqueued by another process wake nobody on SQLite: while jobs come,
                    # look again soon, then less and less often, back to the poll interval.
                    poll = min(
                        HURRIED_POLL if claimed else poll * POLL_GROWTH, ctx.settings.poll_interval
                    )
                    with trio.move_on_after(poll):
                        await self.wakeup.wait()
            except BaseException as exc:
                if is_cancelled(exc):
                    # The hard stop: what is done stays done, if the database takes it in time.
                    await self.process.record_done([*self.recording, *self.finished])
                raise
            watchers.cancel_scope.cancel(reason="the soft stop: nothing in flight")

    async def _turn(self, running: trio.Nursery) -> int:
        """Record what is done, claim what fits; how many jobs it claimed."""
        self.recording, self.finished = self.finished, []
        stopping = self.ctx.stopping
        if not self.recording and stopping.is_set():
            return 0  # nothing to record, and nothing more to claim
        try:
            # Claims are pointless once the soft stop has begun; recording what is done is not.
            recorded, claimed = await self.outage.retry(
                self._exchange, stop=None if self.recording else stopping
            )
        except DatabaseUnavailable:
            return 0  # the soft stop began while waiting to claim
        self.process.report_lost(self.recording, recorded)
        self.recording = []
        for job in claimed:
            self.in_flight += 1
            running.start_soon(self._run_job, job, name=f"job {job.id}")
        return len(claimed)

    async def _exchange(self) -> tuple[set[str], list[Job]]:
        # How many to claim is decided at each try: a retry after an outage must not claim
        # once the soft stop has begun, nor more than the slots free by then.
        settings = self.ctx.settings
        free = 0 if self.ctx.stopping.is_set() else settings.concurrency - self.in_flight
        return await self.table.complete_and_claim(
            self.recording,
            free,
            lease_seconds=settings.lease_seconds,
            owner=self.owner,
            queue=self.queue,
        )

    async def _run_job(self, job: Job) -> None:
        try:
            with unit_of_work(job.trace_id):
                if await self.process(job):
                    self.finished.append(job)
        finally:
            self.in_flight -= 1
            self.wakeup.set()

    async def _wake_on_enqueue(self) -> None:
        while True:
            await self.table.wait_for_enqueue()
            self.wakeup.set()

    async def _wake_on_stop(self) -> None:
        await self.ctx.stopping.wait()
        self.wakeup.set()


async def _report_queue_depth(
    ctx: WorkerContext[JobsSettings], table: JobTable, queue: str
) -> None:
    shown: set[tuple[str, str]] = set()
    async for _ in ctx.every(ctx.settings.poll_interval):
        with contextlib.suppress(DatabaseUnavailable):  # the claim loop reports outages
            depth = await table.depth(queue)
            counts = {(state, job_type or "?"): n for (job_type, state), n in depth.jobs.items()}
            for state, job_type in shown - counts.keys():  # no longer waiting: not a stale count
                JOBS_QUEUED.remove(queue, state, job_type)
            for (state, job_type), number in counts.items():
                JOBS_QUEUED.labels(queue=queue, state=state, type=job_type).set(number)
            shown = set(counts)
            OLDEST_WAIT.labels(queue=queue).set(depth.oldest_wait)


async def _purge_finished_jobs(ctx: WorkerContext[JobsSettings], table: JobTable) -> None:
    """Delete done (and, if so set, failed) jobs past their retention, every PURGE_EVERY."""
    retention: list[tuple[JobState, float | None]] = [
        ("done", ctx.settings.keep_done_seconds),
        ("failed", ctx.settings.keep_failed_seconds),
    ]
    async for _ in ctx.every(PURGE_EVERY):
        with contextlib.suppress(DatabaseUnavailable):  # the claim loop reports outages
            for state, keep in retention:
                if keep is not None and (purged := await table.purge_all(state, older_than=keep)):
                    ctx.log.info("jobs.purged", state=state, count=purged)


@dataclass(frozen=True, slots=True)
class _Processing:
    """How this poller runs one job to its outcome, and records it."""

    table: JobTable
    owner: str
    settings: JobsSettings
    retry_backoff: Backoff
    outage: DatabaseOutage
    log: FilteringBoundLogger
    resources: Resources
    resources_by_type: dict[str, Resources] = field(default_factory=dict)

    async def __call__(self, job: Job) -> bool:
        """Run `job` and record its outcome, unless it is done: then True, for the poller to
        record with the others done meanwhile (one transaction for them all)."""
        runnable = await self._runnable(job)
        if runnable is None:
            return False
        job_type, payload, max_attempts = runnable
        context = JobContext(
            job.id, job.trace_id, job.attempt, self.log, self._resources_of(job_type)
        )
        timeout = job_type.timeout or self.settings.job_timeout
        try:
            with trio.fail_after(timeout):
                await job_type.function(payload, context)
        except trio.TooSlowError:
            await self._retry_or_fail(job, max_attempts, f"timed out after {timeout:g}s", None)
            return False
        except Exception as exc:  # noqa: BLE001  # any failure of the job is the job's outcome
            error = f"{type(exc).__name__}: {exc}"
            await self._retry_or_fail(job, max_attempts, error, exc)
            return False
        except BaseException as exc:
            if is_cancelled(exc):
                # The hard stop cut it short (its `Cancelled` alone, or out of the job's own
                # nurseries): give it back now rather than when the lease expires.
                await self._settle(partial(self.table.release, job, owner=self.owner), job)
                self.log.info("job.released", job_id=job.id, attempt=job.attempt)
            raise
        self.log.info("job.done", job_id=job.id, attempt=job.attempt)
        OUTCOMES["done"].inc()
        return True

    async def _runnable(self, job: Job) -> tuple[JobType[Any], BaseModel, int] | None:
        """The job's type, its payload and its attempts; None if it cannot run here, its
        outcome recorded (dead-lettered, or postponed: its type is unknown here)."""
        document = job.payload
        if isinstance(document, MalformedPayload):
            await self._fail(job, str(document))
            return None
        if not isinstance(document, dict) or not isinstance(document.get(TYPE_KEY), str):
            await self._fail(job, f"payload must be a JSON object with a string {TYPE_KEY!r}")
            return None
        job_type = REGISTERED.get(document[TYPE_KEY])
        if job_type is None:
            await self._retry_unknown(job, document[TYPE_KEY])
            return None
        max_attempts = job_type.max_attempts or self.settings.max_attempts
        if job.attempt > max_attempts:  # its lease expired every time: workers died
            await self._fail(job, f"abandoned after {job.attempt - 1} attempts (lease expired)")
            return None
        try:
            payload = job_type.payload.model_validate(
                {key: value for key, value in document.items() if key != TYPE_KEY}
            )
        except ValidationError as exc:
            await self._fail(job, f"invalid {job_type.name} payload: {_one_line(exc)}")
            return None
        return job_type, payload, max_attempts

    async def record_done(self, jobs: list[Job]) -> None:
        """At the hard stop, one attempt to record the jobs done but not yet recorded, shielded
        for at most SETTLE_SECONDS; those it misses are delivered again once their lease
        expires."""
        if not jobs:
            return
        shielded = trio.CancelScope(shield=True, deadline=trio.current_time() + SETTLE_SECONDS)
        with shielded, contextlib.suppress(DatabaseUnavailable):
            self.report_lost(jobs, await self.table.complete(jobs, owner=self.owner))
            return
        for job in jobs:
            self.log.warning(
                "job.settle_timeout", job_id=job.id, attempt=job.attempt, trace_id=job.trace_id
            )

    def report_lost(self, jobs: list[Job], recorded: set[str]) -> None:
        """Jobs done here that another worker took over (their lease had expired)."""
        for job in jobs:
            if job.id not in recorded:
                self.log.warning(
                    "job.lease_lost", job_id=job.id, attempt=job.attempt, trace_id=job.trace_id
                )

    def _resources_of(self, job_type: JobType[Any]) -> Resources:
        """What `job_type` declared, of what is open: the same for each of its jobs."""
        found = self.resources_by_type.get(job_type.name)
        if found is None:
            found = self.resources.only(job_type.uses, user=f"job {job_type.name!r}")
            self.resources_by_type[job_type.name] = found
        return found

    async def _retry_unknown(self, job: Job, type_name: str) -> None:
        """A type this process does not know: another version's, during a rolling update.
        Postponed, not counted as an attempt and never dead-lettered here: a process that
        knows the type will come. The wait grows with how long the job has waited (full
        jitter, capped at `retry_cap`), so an old replica does not spin on it."""
        error = f"no job type {type_name!r} in this process"
        waited = max(0.0, self.table.now() - job.created_at)
        ceiling = min(self.settings.retry_cap, max(self.settings.retry_initial, waited))
        delay = random.uniform(0, ceiling)
        await self._settle(
            partial(self.table.postpone, job, error, delay=delay, owner=self.owner), job
        )
        self.log.warning("job.unknown_type", job_id=job.id, type=type_name, delay_s=round(delay, 3))
        OUTCOMES["postponed"].inc()

    async def _retry_or_fail(
        self, job: Job, max_attempts: int, error: str, exc: Exception | None
    ) -> None:
        if job.attempt >= max_attempts:
            await self._fail(job, error, exc)
            return
        delay = self.retry_backoff.delay(job.attempt)
        await self._settle(
            partial(self.table.retry, job, error, delay=delay, owner=self.owner), job
        )
        self.log.warning(
            "job.retrying",
            job_id=job.id,
            attempt=job.attempt,
            error=error,
            delay_s=round(delay, 3),
            exc_info=exc,
        )
        OUTCOMES["retried"].inc()

    async def _fail(self, job: Job, error: str, exc: Exception | None = None) -> None:
        """Dead-letter the job: it stays in the table, failed, with its error."""
        await self._settle(partial(self.table.fail, job, error, owner=self.owner), job)
        self.log.error("job.failed", job_id=job.id, attempt=job.attempt, error=error, exc_info=exc)
        OUTCOMES["failed"].inc()

    async def _settle(self, record: Callable[[], Awaitable[bool]], job: Job) -> None:
        """Record a finished job's outcome, retrying while the database is unavailable.

        Each attempt is shielded from the hard stop, for at most SETTLE_SECONDS: a job that is
        done stays done. The waits between attempts are not: the hard stop ends them, and the
        job, still leased, is delivered again once its lease expires.
        """

        async def attempt() -> bool | None:
            # Shielded from the hard stop, yet ended by its own deadline: one scope for both.
            with trio.CancelScope(shield=True, deadline=trio.current_time() + SETTLE_SECONDS):
                return await record()
            return None  # the attempt took too long

        recorded = await self.outage.retry(attempt)
        if recorded is None:
            self.log.warning("job.settle_timeout", job_id=job.id, attempt=job.attempt)
        elif not recorded:
            self.log.warning("job.lease_lost", job_id=job.id, attempt=job.attempt)


class _Wakeup:
    """A wake-up for one waiter: a `set()` before the `wait()` is not lost."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


def _one_line(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'payload'}: {item['msg']}"
        for item in error.errors(include_input=False, include_url=False)
    )
