"""Tick timing of `ctx.every` (absolute deadlines) vs a naive `work(); sleep(interval)` loop.

Both loops tick every 2 ms with the same synthetic body (~0.3 ms of busy work), in the same
process, one after the other, alternating which goes first over the rounds. The candidate is
`service.schedule.every(0.002, stopping=event)` (what `ctx.every` returns) iterated directly
inside `trio.run`; the baseline is the loop a hand-written worker would use,
`while True: work(); await trio.sleep(interval)`.

Both are measured against the ideal grid `start + n * interval`, on Trio's clock, where
`start` is when tick 0 began and `n` the tick's number (the candidate's `Tick.number`, which
counts skipped ticks; the naive loop's iteration count):

- lateness: how long after its slot on the grid a tick's body began, averaged over the ticks.
  Target: <= 1 ms (the wake-up granularity; epoll rounds its timeout up to whole ms).
- drift: (time tick N began - start) - N * interval. Target: no cumulative drift: the
  candidate's stays within a few ms however long it runs, while the naive loop's grows with
  every tick by the body's run time plus the sleep's own lateness (the baseline on both lines).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable

import _common
import trio

from service.schedule import every

BENCH = "ticker_drift"
INTERVAL = 0.002
BODY_SECONDS = 0.0003


def work() -> None:
    """The loop body: ~0.3 ms of busy work, standing in for a real tick's own processing."""
    until = time.perf_counter() + BODY_SECONDS
    while time.perf_counter() < until:
        pass


async def candidate(ticks: int) -> tuple[float, float]:
    """Mean lateness and drift (seconds) of `every()` over `ticks` ticks."""
    stopping = trio.Event()
    start = None
    lateness = []
    async for tick in every(INTERVAL, stopping=stopping):
        now = trio.current_time()
        if start is None:
            start = now
        late = now - (start + tick.number * INTERVAL)
        if tick.number >= ticks:
            return statistics.fmean(lateness), late
        lateness.append(late)
        work()
    raise AssertionError("the ticks ended early")  # pragma: no cover


async def naive(ticks: int) -> tuple[float, float]:
    """Mean lateness and drift (seconds) of `work(); sleep(interval)` over `ticks` ticks."""
    start = trio.current_time()
    lateness = []
    number = 0
    while True:
        late = trio.current_time() - (start + number * INTERVAL)
        if number >= ticks:
            return statistics.fmean(lateness), late
        lateness.append(late)
        work()
        await trio.sleep(INTERVAL)
        number += 1


def main() -> None:
    args = _common.parse_args(__doc__)
    ticks, rounds = (500, 5) if args.quick else (2_000, 9)
    results: dict[str, list[tuple[float, float]]] = {"every": [], "naive": []}

    def run(name: str, loop: Callable[[int], Awaitable[tuple[float, float]]]) -> float:
        lateness, drift = trio.run(loop, ticks)
        results[name].append((lateness, drift))
        return drift

    # No warm-up round: nothing here is cold after the first few ticks, and a round is long.
    _common.alternate(
        rounds,
        {"every": lambda: run("every", candidate), "naive": lambda: run("naive", naive)},
        warmup=0,
    )
    medians = {
        name: [statistics.median(sample[i] for sample in samples) * 1e3 for i in (0, 1)]
        for name, samples in results.items()
    }
    (late, drift), (naive_late, naive_drift) = medians["every"], medians["naive"]
    _common.emit(BENCH, "mean_lateness", late, naive_late, unit="ms", target="<= 1 ms")
    _common.emit(
        BENCH,
        "drift",
        drift,
        naive_drift,
        unit="ms",
        target="no cumulative drift (candidate within a few ms; the naive loop's grows)",
    )


if __name__ == "__main__":
    main()
