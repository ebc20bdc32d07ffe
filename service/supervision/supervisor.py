"""The supervisor: starts workers in `requires` order, stops them in reverse, one at a time.

Like an OTP supervisor it starts each worker only after the ones before it have started, and
on shutdown gives each worker in reverse start order its soft stop and grace period before the
hard cancel, so a worker never loses what it requires while it is still finishing its work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
import trio

from service.resources import Resources
from service.supervision.runner import WorkerRunner, WorkerStatistics
from service.worker import ConfiguredWorker

log = structlog.get_logger("service.supervision")


class Supervisor:
    def __init__(
        self, workers: Sequence[ConfiguredWorker], *, on_give_up: Callable[[str], None]
    ) -> None:
        self.runners = [
            WorkerRunner(item.spec, item.settings, on_give_up=on_give_up) for item in workers
        ]
        self.ready = trio.Event()
        self._stop_requested = trio.Event()
        self._starting = trio.CancelScope()
        self._launched: list[WorkerRunner] = []

    async def run(self, resources: Resources | None = None) -> None:
        """Start every worker, log `service.ready`, then wait for `stop()` and stop them all."""
        async with trio.open_nursery() as nursery:
            with self._starting:
                for runner in self.runners:
                    nursery.start_soon(
                        runner.run, resources or Resources(), name=f"worker:{runner.name}"
                    )
                    self._launched.append(runner)
                    await runner.settled.wait()
                self.ready.set()
                log.info("service.ready", workers=[runner.name for runner in self.runners])
            await self._stop_requested.wait()
            for runner in reversed(self._launched):
                await runner.stop()

    def stop(self) -> None:
        """Begin the soft stop: start no more workers, then stop each in reverse order."""
        self._stop_requested.set()
        self._starting.cancel(reason="the service is stopping")

    def cancel(self, reason: str) -> None:
        """Skip what remains of every grace period: hard-cancel every worker now."""
        self.stop()
        for runner in self._launched:
            runner.cancel(reason)

    def statistics(self) -> SupervisorStatistics:
        """A snapshot of every worker, in start order, `trio.Lock.statistics()`-style.

        What the ops views and the forced exit read: a copy that cannot change under them,
        rather than the runners' own fields, which only the runners write.
        """
        return SupervisorStatistics(
            stopping=self._stop_requested.is_set(),
            workers=tuple(runner.statistics() for runner in self.runners),
        )

    def not_ready_reasons(self) -> list[str]:
        """Why the service is not ready (empty when it is), for `/readyz`."""
        return self.statistics().not_ready_reasons()


@dataclass(frozen=True, slots=True)
class SupervisorStatistics:
    """The supervisor as it was when `Supervisor.statistics()` was called."""

    #: The stop has been requested: the service is draining.
    stopping: bool
    workers: tuple[WorkerStatistics, ...]

    def not_ready_reasons(self) -> list[str]:
        """Why the service was not ready (empty when it was)."""
        if self.stopping:
            return ["the service is stopping"]
        return [
            f"worker {worker.name}: {worker.not_ready_reason}"
            for worker in self.workers
            if worker.not_ready_reason is not None
        ]
