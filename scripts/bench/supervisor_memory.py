"""Memory per supervised idle worker vs a bare Trio task parked in `trio.sleep_forever()`.

What a supervised worker costs on top of the task it runs in (its runner, context, events,
cancel scopes, restart bookkeeping, logger) decides how many a service can afford. Each side
runs in a fresh interpreter: warm up once, read RSS after `gc.collect()`, start N (bare tasks
in a nursery, or workers under a `Supervisor`, each `started()` then waiting on
`ctx.stopping`), wait until all are blocked, read RSS again. Target: <= 1.5x per task.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import _common
import trio
import trio.testing

from service import WorkerContext, logs, worker
from service.registry import ConfiguredWorker
from service.supervision import Supervisor

BENCH = "supervisor_memory"


@worker(name="idle")
async def idle(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
    task_status.started()
    await ctx.stopping.wait()


async def bare(n: int) -> int:
    async with trio.open_nursery() as nursery:
        before = _common.rss_bytes()
        for _ in range(n):
            nursery.start_soon(trio.sleep_forever)
        await trio.testing.wait_all_tasks_blocked()
        after = _common.rss_bytes()
        nursery.cancel_scope.cancel()
    return after - before


async def supervised(n: int) -> int:
    # Declared up front, as a real service's specs are: only what supervision adds is measured.
    workers = [
        ConfiguredWorker(dataclasses.replace(idle, name=f"idle_{i}"), idle.settings())
        for i in range(n)
    ]
    async with trio.open_nursery() as nursery:
        before = _common.rss_bytes()
        supervisor = Supervisor(workers, on_give_up=lambda name: None)
        nursery.start_soon(supervisor.run)
        await supervisor.ready.wait()
        await trio.testing.wait_all_tasks_blocked()
        after = _common.rss_bytes()
        nursery.cancel_scope.cancel()
    return after - before


def child(kind: str, n: int) -> None:
    """One measurement, in this (fresh) process: print the bytes per task as JSON."""
    logs.configure(stream=open(os.devnull, "w"))  # noqa: SIM115  # lives as long as the process
    measure = bare if kind == "bare" else supervised
    trio.run(measure, 10)  # first-use costs (lazy imports, caches) stay out of the measurement
    print(json.dumps({"bytes_per_task": trio.run(measure, n) / n}))


def main() -> None:
    args = _common.parse_args(__doc__)
    n, rounds = (2_000, 3) if args.quick else (10_000, 5)

    def measure(kind: str) -> float:
        return float(_common.run_child(__file__, "--child", kind, str(n))["bytes_per_task"])

    medians = _common.alternate(
        rounds,
        {"supervised": lambda: measure("supervised"), "bare": lambda: measure("bare")},
        warmup=0,
    )
    _common.emit(
        BENCH,
        "rss_per_idle_worker",
        medians["supervised"],
        medians["bare"],
        unit="bytes",
        target="<= 1.5x",
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
