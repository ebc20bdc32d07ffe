"""A thread beside the event loop: it notices when the loop stops answering, and keeps a
deadline that fires even if the loop never answers again.

Every `interval` seconds the thread asks the loop to answer (`TrioToken.run_sync_soon`). An
answer that has not come after `threshold` seconds means something is running without ever
reaching a checkpoint: a synchronous call, a CPU-bound loop. The thread then logs
`loop.stalled` once, naming the task that holds the loop and its stack (read from the loop
thread's frames, so it is where the task is stuck right now, not where it last awaited), and
stays quiet until the answer comes (`loop.recovered`, with how long the loop was gone). A
stall shorter than `threshold` goes unreported; one longer than `threshold + interval` never
does.

The same thread keeps one deadline: the runtime's forced exit, which must fire precisely when
the loop is stuck. The deadline can be set from a signal handler: everything reaches the
thread through a `queue.SimpleQueue`, whose `put` is reentrant, where a `threading.Event`
could deadlock a handler that interrupts the loop thread inside its own `set()`.

The thread logs only through `bounded_logger`: past the log lock, in writes that give up
after a moment. A loop blocked writing to a stdout nobody drains holds that lock; a report
that waited for it would stop this thread, and the deadline with it.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import trio

from service.observability import metrics
from service.observability.bounded import bounded_logger
from service.observability.stacks import frame_line, thread_stack
from service.observability.tasktree import running_task

#: How long a report may wait for stdout before it is dropped (the stall is still counted).
REPORT_BUDGET_S = 0.25

log = bounded_logger(budget=REPORT_BUDGET_S)

_ANSWER: Final = "answer"
_WAKE: Final = "wake"
_CLOSE: Final = "close"


class LoopWatchdog:
    """`with watchdog.running():` inside `trio.run` starts the thread; leaving stops it."""

    def __init__(self, *, threshold: float = 0.25) -> None:
        self.threshold = threshold
        # Asking twice per threshold keeps a missed stall under 1.5 thresholds long, at the
        # cost of waking the loop and this thread 8 times a second at the default.
        self.interval = threshold / 2
        self._inbox: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._deadline: tuple[float, Callable[[], None]] | None = None

    def set_deadline(self, when: float, action: Callable[[], None]) -> None:
        """Call `action` on the watchdog's thread at `time.monotonic()` `when`, loop or not.

        Safe to call from a signal handler. A later call replaces an earlier deadline.
        """
        self._deadline = (when, action)
        self._inbox.put(_WAKE)

    @contextmanager
    def running(self) -> Iterator[None]:
        """Watch the current Trio loop from a thread until the block ends."""
        root = trio.lowlevel.current_root_task()
        assert root is not None  # inside trio.run
        loop = _Loop(trio.lowlevel.current_trio_token(), root, threading.get_ident())
        thread = threading.Thread(
            target=self._watch, args=(loop,), name="service-watchdog", daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            self._inbox.put(_CLOSE)
            thread.join()

    def _watch(self, loop: _Loop) -> None:
        asked: float | None = None  # when the question now unanswered went out
        ask_at = time.monotonic()
        stalled = False
        fired = None  # the deadline whose action has run (only `set_deadline` writes it)
        while True:
            now = time.monotonic()
            deadline = self._deadline
            if deadline is fired:
                deadline = None
            if deadline is not None and now >= deadline[0]:
                fired = deadline
                deadline[1]()
                continue
            if asked is None and now >= ask_at:
                asked = now
                loop.token.run_sync_soon(self._inbox.put, _ANSWER)
            elif asked is not None and not stalled and now - asked >= self.threshold:
                stalled = True
                self._report_stall(loop, now - asked)
            check_at = self._next_check(asked, ask_at, stalled, deadline)
            wait = None if check_at == math.inf else max(0.0, check_at - now)
            try:
                message = self._inbox.get(timeout=wait)
            except queue.Empty:
                continue
            if message == _CLOSE:
                return
            if message == _ANSWER and asked is not None:
                answered = time.monotonic()
                if stalled:
                    log.info("loop.recovered", blocked_s=round(answered - asked, 3))
                    stalled = False
                asked = None
                ask_at = answered + self.interval

    def _next_check(
        self,
        asked: float | None,
        ask_at: float,
        stalled: bool,
        deadline: tuple[float, Callable[[], None]] | None,
    ) -> float:
        """When to look again: to ask the loop, to report a stall, or for the deadline."""
        if asked is None:
            at = ask_at
        elif stalled:
            at = math.inf  # reported: quiet until the answer comes
        else:
            at = asked + self.threshold
        return at if deadline is None else min(at, deadline[0])

    def _report_stall(self, loop: _Loop, blocked: float) -> None:
        try:
            metrics.EVENT_LOOP_STALLS.inc()
            frames = thread_stack(loop.thread)
            task = running_task(loop.root, frames)
            if task is not None and task.coro.cr_frame in frames:
                frames = frames[frames.index(task.coro.cr_frame) :]
            log.warning(
                "loop.stalled",
                blocked_s=round(blocked, 3),
                task=task.name if task is not None else None,
                # One frame a line, outermost first: structlog's console renderer prints a
                # `stack` string below the event, as it does a traceback.
                stack="\n".join(frame_line(frame) for frame in frames),
            )
        except Exception:  # the deadline must outlive a broken report
            log.exception("loop.stall_report_failed")


@dataclass(frozen=True, slots=True)
class _Loop:
    """The loop being watched: how to reach it, its task tree, its thread."""

    token: trio.lowlevel.TrioToken
    root: trio.lowlevel.Task
    thread: int
