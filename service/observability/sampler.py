"""The sampler: a Trio task that turns the loop's own numbers into metrics, once a second.

`trio.lowlevel.current_statistics()` and the default thread limiter can only be read from the
Trio thread, so they are read here, by a task, and never by whatever thread serves a scrape.
Each sample also goes into a short history (the task-count chart of `/debug/`) and to the
growth alarm. How late the sampler's own timer fires is the event loop's lag: the time the
loop spent on other work before it got back to this task.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import structlog
import trio

from service.observability import metrics
from service.observability.growth import GrowthAlarm
from service.observability.monitor import TaskCounts, TaskMonitor

log = structlog.get_logger("service.observability")


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # Trio time
    tasks: TaskCounts
    lag: float


class Sampler:
    """Samples every `interval` seconds and keeps the last `keep` samples."""

    def __init__(
        self,
        monitor: TaskMonitor,
        *,
        interval: float = 1.0,
        keep: int = 300,
        growth: GrowthAlarm | None = None,
    ) -> None:
        self.interval = interval
        self.history: deque[Sample] = deque(maxlen=keep)
        self._monitor = monitor
        self._growth = growth or GrowthAlarm()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sample now and then every `interval` seconds, until cancelled."""
        deadline = trio.current_time()
        lag = 0.0
        task_status.started()
        while True:
            self._sample(lag)
            deadline += self.interval
            await trio.sleep_until(deadline)
            now = trio.current_time()
            lag = now - deadline
            if lag > self.interval:
                deadline = now  # after a stall, carry on from now rather than catch up

    def _sample(self, lag: float) -> None:
        tasks = self._monitor.counts()
        previous = self.history[-1].tasks if self.history else TaskCounts(0, 0, 0)
        self.history.append(Sample(trio.current_time(), tasks, lag))

        metrics.TASKS_LIVE.set(tasks.live)
        metrics.TASKS_SPAWNED.inc(tasks.spawned - previous.spawned)
        metrics.TASKS_EXITED.inc(tasks.exited - previous.exited)
        metrics.TASKS_RUNNABLE.set(trio.lowlevel.current_statistics().tasks_runnable)
        metrics.EVENT_LOOP_LAG.set(lag)
        metrics.THREADS.set(threading.active_count())
        limiter = trio.to_thread.current_default_thread_limiter()
        metrics.THREADS_BUSY.set(limiter.borrowed_tokens)

        growth = self._growth.observe(tasks.live, tasks.exited)
        if growth is not None:
            log.warning(
                "tasks.growing",
                live=growth.live,
                grew_by=growth.grew_by,
                exits=growth.exits,
                over_s=round(growth.samples * self.interval, 3),
                hint="GET /debug/tasks (or send SIGUSR1) to see where they wait",
            )
