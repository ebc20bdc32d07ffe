"""What the stall watchdog costs an idle service: CPU, as a share of one core.

An idle service is where a watchdog's cost is all there is to see: nothing else runs, and it
keeps asking the loop to answer (every 125 ms at its default 250 ms threshold), which wakes
both its thread and the loop. Candidate: a Trio loop with nothing to do but one task asleep,
with the watchdog running at its defaults. Baseline: the same loop without it. Each round
measures the process's CPU time (every thread) over a stretch of wall time; rounds alternate
and medians are reported. Target: <= 0.5 % of a core above the baseline.
"""

from __future__ import annotations

import contextlib
import os
import time

import _common
import trio

from service import logs
from service.observability.watchdog import LoopWatchdog

BENCH = "watchdog_idle"


async def idle(seconds: float, watched: bool) -> float:
    """Percent of one core the process used while idle for `seconds`."""
    with LoopWatchdog().running() if watched else contextlib.nullcontext():
        await trio.sleep(0.2)  # settle: thread started, first answers exchanged
        cpu, wall = time.process_time(), time.perf_counter()
        await trio.sleep(seconds)
        return (time.process_time() - cpu) / (time.perf_counter() - wall) * 100


def main() -> None:
    args = _common.parse_args(__doc__)
    logs.configure(log_format="json", stream=open(os.devnull, "w"))  # noqa: SIM115  # stdout: results
    rounds, seconds = (4, 2.5) if args.quick else (10, 10.0)
    medians = _common.alternate(
        rounds,
        {
            "watched": lambda: trio.run(idle, seconds, True),
            "bare": lambda: trio.run(idle, seconds, False),
        },
        warmup=0,
    )
    value, baseline = medians["watched"], medians["bare"]
    target = "<= 0.5 % of a core above baseline"
    _common.emit(BENCH, "idle_cpu", value, baseline, unit="% of a core", target=target)
    # The target's own metric: the difference, against the same measured baseline.
    _common.emit(
        BENCH, "watchdog_cpu", value - baseline, baseline, unit="% of a core", target=target
    )


if __name__ == "__main__":
    main()
