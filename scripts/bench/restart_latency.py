"""Crash-to-restarted latency of a supervised worker vs a bare catch-and-respawn loop.

A crash loop is where supervision overhead shows: each cycle the supervisor classifies the
error, logs `worker.exited` with its traceback and `worker.restarting`, checks the restart
intensity, draws a backoff delay (zero here: `Backoff(initial=0, cap=0)`) and builds a fresh
context. The baseline is the bare catch-and-respawn loop a hand-written service would use:
spawn the work as a task in a nursery, catch what it raised, spawn it again, where `crashing`
does one checkpoint and raises, as the worker does. Two candidate metrics: with the real JSON
log pipeline writing to /dev/null (three events a cycle, one with a structured traceback), and
with logging filtered out (level "critical"), the supervisor's mechanics alone. Target: <= 2x.
"""

from __future__ import annotations

import os
import time

import _common
import trio

from service import Backoff, WorkerContext, logs, worker
from service.testing import supervised

BENCH = "restart_latency"


async def crashing() -> None:
    await trio.lowlevel.checkpoint()
    raise RuntimeError("crash")


async def bare_loop(cycles: int) -> float:
    """Microseconds per catch-and-respawn cycle."""
    began = time.perf_counter()
    for _ in range(cycles):
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(crashing)
        except* RuntimeError:
            pass
    return (time.perf_counter() - began) / cycles * 1e6


async def supervised_loop(cycles: int) -> float:
    """Microseconds per crash-and-restart cycle under the supervisor."""
    done = trio.Event()
    attempts = 0

    @worker(name="crasher", max_restarts=10**9, backoff=Backoff(initial=0, cap=0))
    async def crasher(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts > cycles:
            done.set()
            task_status.started()
            await ctx.stopping.wait()
            return
        await crashing()

    began = time.perf_counter()
    async with supervised(crasher):
        await done.wait()
        elapsed = time.perf_counter() - began
    return elapsed / cycles * 1e6


def main() -> None:
    args = _common.parse_args(__doc__)
    cycles, rounds = (2_000, 5) if args.quick else (10_000, 9)
    null = open(os.devnull, "w")  # noqa: SIM115  # lives as long as the process

    def candidate(level: str) -> float:
        logs.configure(level=level, log_format="json", stream=null)
        return trio.run(supervised_loop, cycles)

    medians = _common.alternate(
        rounds,
        {
            "json_logs": lambda: candidate("info"),
            "logs_off": lambda: candidate("critical"),
            "bare": lambda: trio.run(bare_loop, cycles),
        },
    )
    for metric, name in (("cycle_json_logs", "json_logs"), ("cycle_logs_off", "logs_off")):
        _common.emit(BENCH, metric, medians[name], medians["bare"], unit="us", target="<= 2x")


if __name__ == "__main__":
    main()
