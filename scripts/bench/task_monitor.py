"""The always-on instrumentation's cost on the busiest path: spawning and joining tasks.

A run spawns N trivial tasks (`async def nothing(): pass`) into one nursery and joins them.
Baseline: bare Trio. Two measures, per task:

- CPU time, in this process, alternating rounds, medians. Candidate: everything the service
  always runs for observation: the task monitor (a Trio `Instrument` counting spawns), the
  sampler task and the stall watchdog's thread.
- Instructions, counted by valgrind (callgrind): exact and free of noise. Each side runs in a
  fresh interpreter that imports the same modules; a run with no tasks is subtracted, and the
  rest divided by N. Candidate: the task monitor, the one part whose cost grows with spawns.
  The sampler and the watchdog work per second, not per task, and under valgrind a second of
  their clock is ~50 times fewer tasks: counted there, they would be charged 50-fold. Their
  cost is in the CPU measure above, and in `watchdog_idle`.

Target: <= 1.10x for both. Needs valgrind (scripts/system-deps installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import _common
import trio

from service import logs
from service.observability.monitor import TaskMonitor
from service.observability.sampler import Sampler
from service.observability.watchdog import LoopWatchdog

BENCH = "task_monitor"
MONITOR_SOURCE = _common.ROOT / "service" / "observability" / "monitor.py"

CHILD = """
    import importlib.util
    import sys

    import trio

    # The monitor's module alone, not the `service` package: its imports (pydantic,
    # structlog) would only make every run under valgrind slower.
    spec = importlib.util.spec_from_file_location("monitor", sys.argv[3])
    monitor = sys.modules["monitor"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(monitor)


    async def nothing() -> None:
        pass


    async def spawn_and_join(count: int) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(nothing)


    async def monitored(count: int) -> None:
        with monitor.TaskMonitor().installed():
            await spawn_and_join(count)


    mode, count = sys.argv[1], int(sys.argv[2])
    trio.run(monitored if mode == "monitored" else spawn_and_join, count)
"""


async def nothing() -> None:
    pass


async def spawn_and_join(count: int) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(nothing)


async def observed(count: int) -> None:
    monitor = TaskMonitor()
    with LoopWatchdog().running(), monitor.installed():
        async with trio.open_nursery() as nursery:
            await nursery.start(Sampler(monitor).run)
            await spawn_and_join(count)
            nursery.cancel_scope.cancel()


def cpu_us_per_task(run: Callable[[int], Awaitable[None]], count: int) -> float:
    began = time.process_time()
    trio.run(run, count)
    return (time.process_time() - began) / count * 1e6


def instructions(script: Path, runs: dict[str, tuple[str, int]]) -> dict[str, int]:
    """Instructions each run of `script` (mode, tasks) executes, all threads, by callgrind.

    The runs go side by side (the counts are exact whatever else the machine is doing).
    """
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    processes = {
        name: subprocess.Popen(
            [*command, str(script), mode, str(count), str(MONITOR_SOURCE)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (mode, count) in runs.items()
    }
    counts = {}
    for name, process in processes.items():
        _, stderr = process.communicate()
        match = re.search(r"Collected : (\d+)", stderr)
        if process.returncode != 0 or match is None:
            raise RuntimeError(f"callgrind run {name} failed:\n{stderr}")
        counts[name] = int(match.group(1))
    return counts


def main() -> None:
    args = _common.parse_args(__doc__)
    if shutil.which("valgrind") is None:
        sys.exit("task_monitor: valgrind not found; run scripts/system-deps")
    count, rounds = (30_000, 3) if args.quick else (100_000, 9)
    counted = 5_000 if args.quick else 100_000
    # The watchdog logs the stalls it sees (closing a nursery of 100,000 tasks is one): keep
    # stdout for the result lines.
    logs.configure(log_format="json", stream=open(os.devnull, "w"))  # noqa: SIM115

    medians = _common.alternate(
        rounds,
        {
            "observed": lambda: cpu_us_per_task(observed, count),
            "bare": lambda: cpu_us_per_task(spawn_and_join, count),
        },
    )
    _common.emit(
        BENCH, "cpu_per_task", medians["observed"], medians["bare"], unit="us", target="<= 1.10x"
    )

    with tempfile.TemporaryDirectory() as tmp:
        _common.write_module(Path(tmp), "spawn_child", CHILD)
        script = Path(tmp) / "spawn_child.py"
        counts = instructions(
            script,
            {"floor": ("bare", 0), "bare": ("bare", counted), "monitored": ("monitored", counted)},
        )
    bare, monitored = ((counts[name] - counts["floor"]) / counted for name in ("bare", "monitored"))
    _common.emit(BENCH, "instructions_per_task", monitored, bare, unit="instr", target="<= 1.10x")


if __name__ == "__main__":
    main()
