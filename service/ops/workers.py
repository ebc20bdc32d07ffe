"""The workers as an operator sees them: `/debug/workers`, their state metric, their tasks.

Read-only views of the supervisor's runners, taken on the event loop when asked for; nothing
here is stored or updated as the workers change.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_args

import trio
from prometheus_client.core import GaugeMetricFamily

from service.observability.tasktree import TaskTree, WorkerTask, snapshot
from service.supervision import Supervisor
from service.supervision.runner import State

STATES: tuple[State, ...] = get_args(State)


def describe_workers(supervisor: Supervisor, now: float) -> list[dict[str, Any]]:
    """Each worker's state, uptime, restarts, and how its last run ended."""
    workers = []
    for runner in supervisor.runners:
        started = runner.started_at
        attempt_running = runner.state in ("starting", "running", "stopping")
        entry: dict[str, Any] = {
            "worker": runner.name,
            "state": runner.state,
            "restart": runner.spec.restart,
            "uptime_s": (
                round(now - started, 3) if attempt_running and started is not None else None
            ),
            "restarts": runner.restarts,
            "not_ready": runner.not_ready_reason,
            "last_exit": None,
        }
        if runner.last_exit is not None:
            ended = runner.last_exit
            error = ended.error
            entry["last_exit"] = {
                "outcome": ended.outcome,
                "uptime_s": round(ended.uptime, 3),
                "error": None if error is None else f"{type(error).__name__}: {error}",
                "cancel_reason": ended.cancel_reason,
            }
        workers.append(entry)
    return workers


def worker_tasks(supervisor: Supervisor) -> dict[trio.lowlevel.Task, WorkerTask]:
    """Each running worker's task, for the task tree: the worker's name and its start."""
    return {
        runner.task: WorkerTask(runner.name, runner.started_at)
        for runner in supervisor.runners
        if runner.task is not None and runner.state != "ended"
    }


def task_tree(supervisor: Supervisor) -> TaskTree:
    """The whole task tree now, worker tasks named and aged (call it on the event loop)."""
    root = trio.lowlevel.current_root_task()
    assert root is not None  # inside trio.run
    return snapshot(root, workers=worker_tasks(supervisor), now=trio.current_time())


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
        for runner in self._supervisor.runners:
            for state in STATES:
                family.add_metric([runner.name, state], 1.0 if runner.state == state else 0.0)
        yield family
