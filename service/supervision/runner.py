"""One supervised worker: its attempts, their outcomes, restarts with backoff, and its stop.

Each attempt runs the worker function directly in the runner's task (no task per attempt)
under one cancel scope: its deadline is the start timeout until the worker reports started,
and cancelling it is the hard cancel. Every attempt ends in exactly one `worker.exited` event.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import structlog
import trio
from pydantic import BaseModel

from service.exception_groups import cancellation_in, holds
from service.observability import metrics
from service.resources import Resources
from service.supervision.outcome import Exit, StartTimeout, classify_error, describe_cancel
from service.supervision.policy import RestartIntensity, should_restart
from service.worker import AnyWorkerSpec, RestartType, WorkerContext

State = Literal["pending", "starting", "running", "backoff", "stopping", "ended"]


@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    """One worker as it was when `WorkerRunner.statistics()` was called: a copy, never
    updated, safe to keep, to render, or to take from another thread (the forced exit's)."""

    name: str
    restart: RestartType
    state: State
    #: When the current attempt began (Trio time); None before the first.
    attempt_started_at: float | None
    restarts: int
    #: Why this worker keeps the service from being ready (None: it does not).
    not_ready_reason: str | None
    #: How the last attempt ended (None until one has).
    last_exit: Exit | None
    #: The runner's task until the runner ends (None before it starts and after it ends).
    task: trio.lowlevel.Task | None


log = structlog.get_logger("service.supervision")


class WorkerRunner:
    """Runs one worker until it ends for good, it is stopped, or its supervisor gives up."""

    __slots__ = (
        "_backoff",
        "_backoff_wait",
        "_context",
        "_intensity",
        "_on_give_up",
        "_resources",
        "_scope",
        "_stopping",
        "done",
        "last_exit",
        "restarts",
        "settings",
        "settled",
        "spec",
        "started_at",
        "state",
        "task",
    )

    def __init__(
        self, spec: AnyWorkerSpec, settings: BaseModel, *, on_give_up: Callable[[str], None]
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.state: State = "pending"
        self.restarts = 0
        self.task: trio.lowlevel.Task | None = None
        #: When the current attempt began (Trio time), and how the last one ended.
        self.started_at: float | None = None
        self.last_exit: Exit | None = None
        #: Set once the first attempt has started, or the runner ended without one starting.
        self.settled = trio.Event()
        self.done = trio.Event()
        self._on_give_up = on_give_up
        self._resources = Resources()
        self._scope: trio.CancelScope | None = None  # the current attempt's
        self._stopping = False
        self._backoff_wait: trio.CancelScope | None = None
        self._context: WorkerContext[Any] | None = None
        self._intensity = RestartIntensity(spec.max_restarts, spec.within)
        self._backoff = spec.backoff.tracker()

    @property
    def name(self) -> str:
        return self.spec.name

    def statistics(self) -> WorkerStatistics:
        """A snapshot of this worker, `trio.Lock.statistics()`-style (any thread may call it)."""
        state = self.state
        return WorkerStatistics(
            name=self.name,
            restart=self.spec.restart,
            state=state,
            attempt_started_at=self.started_at,
            restarts=self.restarts,
            not_ready_reason=self.not_ready_reason,
            last_exit=self.last_exit,
            task=None if state == "ended" else self.task,
        )

    @property
    def not_ready_reason(self) -> str | None:
        """Why this worker keeps the service from being ready, if it does."""
        if self.state in ("pending", "starting", "backoff", "stopping"):
            return self.state
        if self.state == "running" and self._context is not None:
            return self._context.not_ready_reason
        return None

    async def run(self, resources: Resources) -> None:
        self.task = trio.lowlevel.current_task()
        self._resources = resources.only(self.spec.needs(), user=f"worker {self.name!r}")
        # This task's context is a copy of its spawner's: drop whatever unit of work was bound
        # there, so no trace_id leaks into a worker that outlives it.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(worker=self.name)
        try:
            await self._supervise()
        finally:
            self.state = "ended"
            self.settled.set()
            self.done.set()

    async def _supervise(self) -> None:
        if self._stopping:
            # Stopped before the first attempt began (a signal while the supervisor was still
            # starting the workers before this one): start none, rather than one whose
            # context never hears of the stop and is cut off only when its grace runs out.
            return
        attempt = 1
        while True:
            ended = await self._attempt(attempt)
            if self._stopping or not should_restart(self.spec.restart, ended.outcome):
                return
            if ended.started and ended.uptime >= self.spec.within:
                self._backoff.reset()
            if not self._intensity.allow(trio.current_time()):
                log.error(
                    "supervisor.gave_up",
                    restarts=self._intensity.recent,
                    within_s=self.spec.within,
                )
                self._on_give_up(self.name)
                return
            delay = self._backoff.next_delay()
            attempt += 1
            log.info("worker.restarting", attempt=attempt, delay_s=round(delay, 3))
            self.state = "backoff"
            if delay > 0:
                with trio.move_on_after(delay) as self._backoff_wait:
                    await trio.sleep_forever()  # until the delay ends, or the stop cuts it short
                self._backoff_wait = None
            else:
                await trio.lowlevel.checkpoint()
            if self._stopping:
                return
            self.restarts += 1
            metrics.WORKER_RESTARTS.labels(self.name).inc()

    async def _attempt(self, attempt: int) -> Exit:
        context = WorkerContext(
            self.name, self.settings, attempt=attempt, resources=self._resources
        )
        self._context = context
        began = self.started_at = trio.current_time()
        # One scope per attempt: until the worker reports started its deadline is the start
        # timeout; cancelling it is the hard cancel.
        scope = self._scope = trio.CancelScope(deadline=began + self.spec.start_timeout)
        readiness = _Readiness(self, scope, attempt)
        self.state = "starting"
        why: trio.Cancelled | None = None
        try:
            with scope:
                try:
                    await self.spec.run(context, task_status=readiness)
                except BaseException as exc:
                    why = cancellation_in(exc)  # whoever cancelled, keep their reason
                    raise
        except BaseException as exc:
            # A crash, or a cancellation from outside this worker (the whole run is ending).
            kind, error, reason = classify_error(exc)
            ended = Exit(kind, trio.current_time() - began, readiness.reported, error, reason)
            self._log_exit(ended)
            # Cancellation must reach the scope it belongs to; a crash mixed with cancellation
            # is kept as the crash, and the cancellation fires again at the next checkpoint.
            # KeyboardInterrupt and SystemExit end the process, even from a nursery's group.
            if kind == "cancelled" or holds(exc, KeyboardInterrupt, SystemExit):
                raise
            return ended
        uptime = trio.current_time() - began
        if not scope.cancelled_caught:
            kind = "stopped" if context.stopping.is_set() else "completed"
            outcome = Exit(kind, uptime, readiness.reported)
        else:
            assert why is not None  # the scope caught a Cancelled, which passed through above
            if why.source == "deadline":
                timeout = self.spec.start_timeout
                error = StartTimeout(f"did not report started within {timeout:g}s")
                outcome = Exit("crashed", uptime, False, error)
            else:
                reason = describe_cancel(why)
                outcome = Exit("cancelled", uptime, readiness.reported, cancel_reason=reason)
        self._log_exit(outcome)
        return outcome

    def _log_exit(self, ended: Exit) -> None:
        self.last_exit = ended
        metrics.WORKER_EXITS.labels(self.name, ended.outcome).inc()
        fields: dict[str, Any] = {
            "outcome": ended.outcome,
            "uptime_s": round(ended.uptime, 3),
            "restarts": self.restarts,
        }
        if ended.outcome == "crashed":
            assert ended.error is not None
            fields["error"] = f"{type(ended.error).__name__}: {ended.error}"
            log.error("worker.exited", exc_info=ended.error, **fields)
        elif ended.outcome == "cancelled":
            log.warning("worker.exited", cancel_reason=ended.cancel_reason, **fields)
        else:
            log.info("worker.exited", **fields)

    def mark_started(self, attempt: int) -> None:
        if not self._stopping:
            self.state = "running"
        log.info("worker.started", attempt=attempt)
        self.settled.set()

    async def stop(self) -> None:
        """The two phases for this worker: the soft stop, then after `grace` the hard cancel."""
        self.request_stop()
        with trio.move_on_after(self.spec.grace):
            await self.done.wait()
        if not self.done.is_set():
            self.cancel(f"grace period of {self.spec.grace:g}s exceeded")
            await self.done.wait()

    def request_stop(self) -> None:
        """The soft stop: no more restarts, `ctx.stopping` set, `ctx.every` ends."""
        self._stopping = True
        if self._backoff_wait is not None:
            self._backoff_wait.cancel(reason="the worker is stopping")
        if self.state != "ended":
            self.state = "stopping"
        if self._context is not None:
            self._context.stopping.set()

    def cancel(self, reason: str) -> None:
        """The hard cancel, now: the reason travels in the worker's `trio.Cancelled`."""
        self.request_stop()
        if self._scope is not None:
            self._scope.cancel(reason=reason)


class _Readiness:
    """The `task_status` a worker gets: `started()` marks the attempt as up and ready."""

    __slots__ = ("_attempt", "_runner", "_scope", "reported")

    def __init__(self, runner: WorkerRunner, scope: trio.CancelScope, attempt: int) -> None:
        self._runner = runner
        self._scope = scope
        self._attempt = attempt
        self.reported = False

    def started(self, value: object = None) -> None:
        if self.reported:
            raise RuntimeError("task_status.started() called twice")
        self.reported = True
        self._scope.deadline = math.inf  # the start timeout no longer applies
        self._runner.mark_started(self._attempt)
