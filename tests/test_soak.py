"""Ten thousand crash/restart cycles leave tasks, fds, threads and memory where they were."""

from __future__ import annotations

import gc
import os
import resource
from collections.abc import Iterator
from typing import TextIO

import pytest
import trio

from service import Backoff, WorkerContext, logs, worker
from service.testing import ProcessSnapshot, supervised

WARM_UP = 1_000
CYCLES = 10_000


def live_tasks() -> int:
    def count(task: trio.lowlevel.Task) -> int:
        return 1 + sum(count(child) for n in task.child_nurseries for child in n.child_tasks)

    return count(trio.lowlevel.current_root_task())


def resident_bytes() -> int:
    gc.collect()
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


@pytest.fixture
def devnull() -> Iterator[TextIO]:
    with open(os.devnull, "w", encoding="utf-8") as sink:
        yield sink


@pytest.mark.usefixtures("restore_logging")
async def test_crash_restart_cycles_leave_nothing_behind(devnull: TextIO) -> None:
    warmed_up, resume, finished = trio.Event(), trio.Event(), trio.Event()
    attempts = 0

    @worker(max_restarts=1_000_000, within=0.001, backoff=Backoff(initial=0, cap=0))
    async def crash_looper(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        nonlocal attempts
        attempts += 1
        task_status.started()
        if attempts == WARM_UP:
            warmed_up.set()
            await resume.wait()
        if attempts == WARM_UP + CYCLES:
            finished.set()
            await ctx.stopping.wait()
            return
        raise RuntimeError("crash")

    logs.configure(log_format="json", stream=devnull)  # the real pipeline, every event rendered
    async with supervised(crash_looper):
        await warmed_up.wait()
        tasks, snapshot, memory = live_tasks(), ProcessSnapshot(), resident_bytes()
        resume.set()
        await finished.wait()
        assert live_tasks() == tasks
        assert snapshot.busy_threads(settle=0) == []
        assert snapshot.new_fds() == []
        assert resident_bytes() - memory < 2 * 1024 * 1024
    assert attempts == WARM_UP + CYCLES
