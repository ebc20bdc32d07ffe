"""How long a task-tree dump of 10,000 tasks pauses the event loop, as text and as JSON.

The dump runs on the loop in one synchronous step (`/debug/tasks`, SIGUSR1), so its duration
is a pause of the whole service. The tree: one worker-like task holding 10,000 idle children,
as a service holding 10,000 connections would, beside a few other tasks. Candidates: the
snapshot (walk, group identical siblings) plus rendering the text, or the JSON document
serialised. Baseline: the floor any dump pays, walking the same tree with Trio's public API
(`current_root_task`, `child_nurseries`, `child_tasks`) and reading every task's await frames,
with no grouping and no output. The grouped text must stay short; that is checked, not timed.
Target: <= 100 ms of pause.
"""

from __future__ import annotations

import json
import time

import _common
import trio
import trio.testing

from service.observability.tasktree import WorkerTask, snapshot

BENCH = "task_dump"
TASKS = 10_000


def root() -> trio.lowlevel.Task:
    task = trio.lowlevel.current_root_task()
    assert task is not None
    return task


def walk_only() -> float:
    began = time.perf_counter()
    pending = [root()]
    while pending:
        task = pending.pop()
        list(task.iter_await_frames())
        pending.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return (time.perf_counter() - began) * 1e3


def dump(workers: dict[trio.lowlevel.Task, WorkerTask], output: str) -> float:
    began = time.perf_counter()
    tree = snapshot(root(), workers=workers, now=trio.current_time())
    text = tree.text() if output == "text" else json.dumps(tree.as_json())
    elapsed = (time.perf_counter() - began) * 1e3
    if output == "text" and len(text.splitlines()) > 20:
        raise RuntimeError(f"the dump is not grouped:\n{text[:2000]}")
    return elapsed


async def holder(*, task_status: trio.TaskStatus[trio.lowlevel.Task]) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(TASKS):
            nursery.start_soon(trio.sleep_forever)
        task_status.started(trio.lowlevel.current_task())
        await trio.sleep_forever()


async def measure(rounds: int) -> dict[str, float]:
    async with trio.open_nursery() as nursery:
        worker = await nursery.start(holder)
        await trio.testing.wait_all_tasks_blocked()
        workers = {worker: WorkerTask("holder", trio.current_time())}
        medians = _common.alternate(
            rounds,
            {
                "text": lambda: dump(workers, "text"),
                "json": lambda: dump(workers, "json"),
                "walk": walk_only,
            },
        )
        nursery.cancel_scope.cancel()
    return medians


def main() -> None:
    args = _common.parse_args(__doc__)
    medians = trio.run(measure, 5 if args.quick else 21)
    for output in ("text", "json"):
        _common.emit(
            BENCH,
            f"pause_{output}",
            medians[output],
            medians["walk"],
            unit="ms",
            target="<= 100 ms",
        )


if __name__ == "__main__":
    main()
