"""What a test must not leave behind: tasks, busy threads, open fds, unraisable exceptions.

Each check compares the process after a test with a snapshot taken before it and returns one
line per leak, naming it well enough to find the code that leaked it.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import trio

from service.observability.stacks import task_stack

#: How long threads that are just finishing get to exit or go idle before they count.
THREAD_SETTLE_SECONDS = 2.0


def open_fds() -> dict[int, str]:
    """Every open file descriptor and what it points at (`socket:[123]`, a path, ...)."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:
            continue  # the fd listdir itself used, closed by now
    return fds


def _idle_trio_threads() -> set[threading.Thread]:
    # Trio keeps finished worker threads for 10 s to reuse them; idle ones are not leaks. The
    # cache has no public API, so read it defensively: an upgrade that moves it makes every
    # Trio thread look busy, which fails loudly rather than hiding a leak.
    from trio._core._thread_cache import THREAD_CACHE  # noqa: PLC0415

    return {worker._thread for worker in list(THREAD_CACHE._idle_workers)}  # noqa: SLF001


@dataclass
class ProcessSnapshot:
    """Fds and threads before a test, to compare with after it."""

    fds: dict[int, str] = field(default_factory=open_fds)
    threads: set[threading.Thread] = field(default_factory=lambda: set(threading.enumerate()))
    idle_trio_threads: set[threading.Thread] = field(default_factory=_idle_trio_threads)

    def busy_threads(self, settle: float = THREAD_SETTLE_SECONDS) -> list[str]:
        """Threads started (or put to work) since the snapshot that are still running."""
        deadline = time.monotonic() + settle
        while True:
            idle = _idle_trio_threads()
            busy = [
                thread
                for thread in threading.enumerate()
                if thread.is_alive()
                and thread not in idle
                and (thread not in self.threads or thread in self.idle_trio_threads)
            ]
            if not busy or time.monotonic() >= deadline:
                return [f"thread still running: {thread.name!r}" for thread in busy]
            time.sleep(0.01)

    def new_fds(self) -> list[str]:
        """Fds opened since the snapshot and not closed (after a garbage collection)."""
        gc.collect()
        return [
            f"fd {fd} left open: {target}"
            for fd, target in sorted(open_fds().items())
            if self.fds.get(fd) != target
        ]


def leaked_tasks(test_task: trio.lowlevel.Task) -> list[str]:
    """Tasks still running under a test's task once its body returned.

    After a test function returns, the only nursery left open under its task is the one
    pytest-trio lends as the `nursery` fixture, which cancels whatever is left in it without a
    word. A task left there was never stopped by the test: the leak this reports.
    """
    leaks = []
    for nursery in test_task.child_nurseries:
        for task in nursery.child_tasks:
            where = task_stack(task)
            leaks.append(f"task still running: {task.name!r} at {where[-1] if where else '?'}")
    return leaks


@dataclass
class UnraisableCollector:
    """Exceptions Python could not raise (from `__del__`, GC, ...), ResourceWarnings among them."""

    seen: list[str] = field(default_factory=list)

    def hook(self, unraisable: sys.UnraisableHookArgs) -> None:
        where = unraisable.err_msg or "Exception ignored in"
        self.seen.append(
            f"unraisable exception: {where}: {unraisable.object!r}: "
            f"{unraisable.exc_type.__name__}: {unraisable.exc_value}"
        )

    @contextmanager
    def installed(self) -> Iterator[UnraisableCollector]:
        previous = sys.unraisablehook
        sys.unraisablehook = self.hook
        try:
            yield self
        finally:
            gc.collect()  # run pending finalizers now, while this test is still the culprit
            sys.unraisablehook = previous
