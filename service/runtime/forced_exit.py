"""The last line of defence: exit with code 3 if shutdown has not finished by its deadline.

A thread, because the case it exists for is an event loop that no longer runs: a worker
stuck in a synchronous call, or one that keeps its cancel scope shielded. Before exiting it
logs `shutdown.unstopped` with every worker still running and where each one is stuck.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import structlog

EXIT_FORCED = 3

log = structlog.get_logger("service.runtime")


class ForcedExit:
    """Armed at the first stop request; ends the process `timeout` seconds later unless closed."""

    def __init__(self, timeout: float, describe: Callable[[], list[dict[str, Any]]]) -> None:
        self._timeout = timeout
        self._describe = describe
        self._deadline = math.inf
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._watch, name="service-forced-exit", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join()

    def arm(self) -> None:
        """Start the countdown (once). Safe to call from a signal handler."""
        if self._deadline == math.inf:
            self._deadline = time.monotonic() + self._timeout
            self._wake.set()

    def _watch(self) -> None:
        # Clear the wake-up only after waking, and re-read both fields on every turn: a wake-up
        # that lands anywhere in the loop is then never lost.
        while not self._closed:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                self._exit()
            self._wake.wait(None if remaining == math.inf else remaining)
            self._wake.clear()

    def _exit(self) -> None:
        try:
            log.critical("shutdown.unstopped", timeout_s=self._timeout, workers=self._describe())
            log.info("service.stopped", exit_code=EXIT_FORCED)
            sys.stdout.flush()
        finally:
            os._exit(EXIT_FORCED)
