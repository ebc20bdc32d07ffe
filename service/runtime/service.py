"""The service's lifetime, from `service.starting` to `service.stopped` and its exit code."""

from __future__ import annotations

import contextlib
import contextvars
import gc
import signal
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog
import trio

from service.exception_groups import lone_errors_unwrapped
from service.exit_codes import EXIT_CLEAN, EXIT_CRASHED, EXIT_GAVE_UP, EXIT_USAGE
from service.observability import metrics
from service.observability.stacks import frame_line, task_stack, thread_stack
from service.observability.watchdog import LoopWatchdog
from service.ops import Operations
from service.ops.server import ListenError
from service.registry import ServiceConfig
from service.resources import DatabaseError, ResourceFailed, describe_error, open_resources
from service.resources.failures import failures_reported_to
from service.runtime.forced_exit import ForcedExit
from service.runtime.signals import stop_signal_handlers
from service.supervision import Supervisor

log = structlog.get_logger("service.runtime")


class Service:
    """The supervisor and the shutdown protocol around it, for one `trio.run`."""

    def __init__(self, config: ServiceConfig, *, forced_exit: bool = True) -> None:
        """`forced_exit=False` for a service inside another program (a test process): its
        stop is never cut short by `os._exit`, which would end that program too."""
        self.config = config
        self.exit_code = EXIT_CLEAN
        self.stopping = False
        self.supervisor = Supervisor(config.workers, on_give_up=self._gave_up)
        self.operations = Operations(config.settings, self.supervisor)
        self.watchdog = LoopWatchdog()
        loop_thread = threading.get_ident()
        self.forced_exit = (
            ForcedExit(
                config.settings.shutdown_timeout,
                lambda: unstopped_workers(self.supervisor, loop_thread),
                self.watchdog,
            )
            if forced_exit
            else None
        )
        self._stop_began: float | None = None

    async def run(
        self, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
    ) -> int:
        """Run until stopped; `started` with the ops server's (host, port) once it listens."""
        token = trio.lowlevel.current_trio_token()

        def on_signal(signum: signal.Signals) -> None:
            # Inside the signal handler, possibly while the loop is blocked: arm the deadline
            # now, and leave the rest to the loop.
            if self.forced_exit is not None:
                self.forced_exit.arm()
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self.on_signal, signum)

        metrics.SHUTDOWN_DURATION.set_function(self._shutdown_duration)
        with (
            self.watchdog.running(),
            stop_signal_handlers(on_signal),
            failures_reported_to(self._resource_failed),
        ):
            log.info("service.starting", workers=[item.spec.name for item in self.config.workers])
            self._warn_about_configuration()
            try:
                async with (
                    self._operations(task_status),
                    open_resources(
                        self.config.resources, self.config.resource_settings
                    ) as resources,
                ):
                    await self.supervisor.run(resources)
            except ResourceFailed as exc:
                # A clear line, not a traceback: the message says what to fix.
                log.error(  # noqa: TRY400
                    "resource.failed", resource=exc.name, error=describe_error(exc.error)
                )
                return EXIT_USAGE
            except ListenError as exc:
                log.error("ops.failed", error=str(exc))  # noqa: TRY400  # as above
                return EXIT_USAGE
        return self.exit_code

    @contextlib.asynccontextmanager
    async def _operations(
        self, task_status: trio.TaskStatus[tuple[str, int]]
    ) -> AsyncIterator[None]:
        """The ops surface, up before the block and cancelled only after it has ended.

        So `/livez` and `/readyz` answer from the start, through the whole shutdown.
        """
        # Every nursery on the way wraps even a lone error in a group: let it out as itself,
        # so it is caught (and logged) as what it is.
        with lone_errors_unwrapped():
            async with trio.open_nursery() as nursery:
                task_status.started(await nursery.start(self.operations.run))
                yield
                nursery.cancel_scope.cancel(reason="the service has stopped")

    def _shutdown_duration(self) -> float:
        """For `service_shutdown_duration_seconds`: 0 until the soft stop, then time since."""
        return 0.0 if self._stop_began is None else time.monotonic() - self._stop_began

    def _warn_about_configuration(self) -> None:
        if not self.config.workers:
            log.warning("service.no_workers", hint="select workers with SERVICE_WORKERS")
        graces = sum(item.spec.grace for item in self.config.workers)
        if graces >= self.config.settings.shutdown_timeout:
            # Workers stop one after another, so their graces add up.
            log.warning(
                "service.shutdown_timeout_too_short",
                shutdown_timeout_s=self.config.settings.shutdown_timeout,
                total_grace_s=graces,
            )

    def on_signal(self, signum: signal.Signals) -> None:
        if not self.stopping:
            self._begin_stop(signal=signum.name)
        else:
            log.warning("service.stopping_now", signal=signum.name)
            self.supervisor.cancel(f"second signal ({signum.name}) during shutdown")

    def _gave_up(self, worker: str) -> None:
        if not self.stopping:
            self.exit_code = EXIT_GAVE_UP
            # Called from the worker's own task: log the service's event outside its context,
            # so it does not carry that worker's name.
            contextvars.Context().run(
                self._begin_stop, reason=f"supervisor gave up on worker {worker}"
            )

    def stop(self, reason: str) -> None:
        """Begin the two-phase stop, as a first signal would (a later call changes nothing)."""
        if not self.stopping:
            self._begin_stop(reason=reason)

    def _resource_failed(self, resource: str, error: Exception) -> None:
        """A resource's background work failed (PostgreSQL: the migration retried, the
        listener): log it, and stop in order. The exit code says what happened: 2 for what
        waiting cannot fix (privileges, a newer schema: as at start-up), 1 for anything else
        (unexpected: a bug)."""
        unexpected = not isinstance(error, DatabaseError)
        log.error(
            "resource.failed",
            resource=resource,
            error=describe_error(error),
            exc_info=error if unexpected else None,
        )
        if self.exit_code == EXIT_CLEAN:
            self.exit_code = EXIT_CRASHED if unexpected else EXIT_USAGE
        if not self.stopping:
            # Reported from the resource's own task: log outside its context.
            contextvars.Context().run(self._begin_stop, reason=f"resource {resource} failed")

    def _begin_stop(self, **why: str) -> None:
        self.stopping = True
        self._stop_began = time.monotonic()
        log.info("service.stopping", **why)
        if self.forced_exit is not None:
            self.forced_exit.arm()
        self.supervisor.stop()


def unstopped_workers(supervisor: Supervisor, loop_thread: int) -> list[dict[str, Any]]:
    """Every worker still running and where it is: the loop's own stack for one blocking it.

    Called on the watchdog's thread, possibly while the loop is stuck: it reads the
    supervisor's snapshot, never the runners' fields.
    """
    loop_frames = thread_stack(loop_thread)
    report = []
    for worker in supervisor.statistics().workers:
        if worker.task is None:
            continue
        entry: dict[str, Any] = {"worker": worker.name, "state": worker.state}
        outer = worker.task.coro.cr_frame
        if outer in loop_frames:
            entry["blocking_loop"] = True
            entry["stack"] = [
                frame_line(frame) for frame in loop_frames[loop_frames.index(outer) :]
            ]
        else:
            entry["stack"] = task_stack(worker.task)
        report.append(entry)
    return report


def run(config: ServiceConfig) -> int:
    """Run the service until it stops; returns the process exit code."""
    service = Service(config)
    # Everything alive now (modules, config) lives as long as the process: move it out of the
    # collector's sight, so the full collections a busy service triggers (10,000 tasks
    # cancelled at shutdown, for one) do not walk it again and again.
    gc.collect()
    gc.freeze()
    try:
        code = trio.run(service.run)
    except Exception:
        log.exception("service.crashed")
        code = EXIT_CRASHED
    finally:
        gc.unfreeze()
    log.info("service.stopped", exit_code=code)
    return code
