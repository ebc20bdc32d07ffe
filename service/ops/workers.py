"""The workers as an operator sees them: `/debug/workers`, their state metric, their tasks.

Views of the supervisor's snapshot (`Supervisor.statistics()`), taken when asked for; nothing
here reads a runner's own fields, and nothing is stored or updated as the workers change.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_args

import trio
from prometheus_client.core import GaugeMetricFamily

from service.observability.tasktree import TaskTree, WorkerTask, snapshot
from service.supervision import Supervisor, SupervisorStatistics
from service.supervision.runner import State

STATES: tuple[State, ...] = get_args(State)


def describe_workers(statistics: SupervisorStatistics, now: float) -> list[dict[str, Any]]:
    """Each worker's state, uptime, restarts, and how its last run ended."""
    workers = []
    for worker in statistics.workers:
        started = worker.attempt_started_at
        attempt_running = worker.state in ("starting", "running", "stopping")
        entry: dict[str, Any] = {
            "worker": worker.name,
            "state": worker.state,
            "restart": worker.restart,
            "uptime_s": (
                round(now - started, 3) if attempt_running and started is not None else None
            ),
            "restarts": worker.restarts,
            "not_ready": worker.not_ready_reason,
            "last_exit": None,
        }
        if worker.last_exit is not None:
            ended = worker.last_exit
            error = ended.error
            entry["last_exit"] = {
                "outcome": ended.outcome,
                "uptime_s": round(ended.uptime, 3),
                "error": None if error is None else f"{type(error).__name__}: {error}",
                "cancel_reason": ended.cancel_reason,
            }
        workers.append(entry)
    return workers


def worker_tasks(statistics: SupervisorStatistics) -> dict[trio.lowlevel.Task, WorkerTask]:
    """Each running worker's task, for the task tree: the worker's name and its start."""
    return {
        worker.task: WorkerTask(worker.name, worker.attempt_started_at)
        for worker in statistics.workers
        if worker.task is not None
    }


def task_tree(supervisor: Supervisor) -> TaskTree:
    """The whole task tree now, worker tasks named and aged (call it on the event loop)."""
    root = trio.lowlevel.current_root_task()
    assert root is not None  # inside trio.run
    workers = worker_tasks(supervisor.statistics())
    return snapshot(root, workers=workers, now=trio.current_time())


class WorkerStateCollector:
    """`service_worker_state{worker, state}`: 1 for each worker's current state, else 0."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "service_worker_state",
            f"1 for the state each worker is in now, else 0 ({', '.join(STATES)}).",
            labels=["worker", "state"],
        )
        for worker in self._supervisor.statistics().workers:
            for state in STATES:
                family.add_metric([worker.name, state], 1.0 if worker.state == state else 0.0)
        yield family
