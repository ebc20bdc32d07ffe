"""The stall watchdog: a loop that stops answering is reported once, with the task holding it.

These run on the real clock: the watchdog is a thread, and what it watches is real time.
"""

from __future__ import annotations

import threading
import time

import trio

from service.observability.metrics import REGISTRY
from service.observability.watchdog import LoopWatchdog
from tests.conftest import Events

PATIENCE_S = 10.0


async def queued_callbacks_done() -> None:
    """Return once every callback queued so far with `run_sync_soon` has run (in order)."""
    done = trio.Event()
    trio.lowlevel.current_trio_token().run_sync_soon(done.set)
    await done.wait()


def stalls() -> float:
    return REGISTRY.get_sample_value("service_event_loop_stalls_total") or 0.0


async def hogging_the_loop() -> None:
    await trio.lowlevel.checkpoint()
    time.sleep(0.6)  # noqa: ASYNC251  # the stall: nothing else runs meanwhile


async def test_a_stall_is_reported_once_with_the_task_and_its_stack(events: Events) -> None:
    before = stalls()
    with LoopWatchdog(threshold=0.1).running():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hogging_the_loop, name="hog")
        # The watchdog's unanswered question was queued during the stall: once it has been
        # answered, leaving the block lets the thread read the answer before it stops.
        await queued_callbacks_done()
    # Only this stall is the test's: a loaded machine may add others, each reported alike.
    [stalled] = events.named("loop.stalled", task="hog")
    assert stalled["blocked_s"] >= 0.1
    stack = stalled["stack"].splitlines()
    assert stack[0].endswith("in hogging_the_loop")  # from the task's own frame
    assert "test_observability_watchdog.py" in stack[-1]  # to where it is stuck
    reports = [e for e in events.entries if e["event"] in ("loop.stalled", "loop.recovered")]
    assert [e["event"] for e in reports] == ["loop.stalled", "loop.recovered"] * (len(reports) // 2)
    recovered = reports[reports.index(stalled) + 1]
    assert recovered["blocked_s"] >= stalled["blocked_s"]
    assert stalls() - before == len(reports) // 2


async def test_the_deadline_fires_while_the_loop_is_stuck() -> None:
    fired = threading.Event()
    watchdog = LoopWatchdog(threshold=0.1)
    with watchdog.running():
        watchdog.set_deadline(time.monotonic() + 0.2, fired.set)
        # The loop blocks right here until the watchdog's thread has run the deadline's action.
        assert fired.wait(PATIENCE_S)


async def test_a_deadline_set_before_the_loop_is_watched_still_fires() -> None:
    fired = threading.Event()
    watchdog = LoopWatchdog()
    watchdog.set_deadline(time.monotonic(), fired.set)
    with watchdog.running():
        assert fired.wait(PATIENCE_S)
