"""The last line of defence: exit with code 3 if shutdown has not finished by its deadline.

The case it exists for is an event loop that no longer runs: a worker stuck in a synchronous
call, or one that keeps its cancel scope shielded. So the deadline is kept by the stall
watchdog's thread, which runs beside the loop for exactly that reason. Before exiting it logs
`shutdown.unstopped` with every worker still running and where each one is stuck.

The exit depends on nothing the loop can hold: the report is written past the log lock (which
a loop blocked writing to a full stdout holds), in writes bounded by `REPORT_BUDGET_S` a line,
and `os._exit` follows whatever became of them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from service.exit_codes import EXIT_FORCED
from service.observability.bounded import bounded_logger
from service.observability.watchdog import LoopWatchdog

#: How long each line of the report may wait for stdout before it is dropped.
REPORT_BUDGET_S = 0.25

log = bounded_logger(budget=REPORT_BUDGET_S)


class ForcedExit:
    """Armed at the first stop request; ends the process `timeout` seconds later."""

    def __init__(
        self,
        timeout: float,
        describe: Callable[[], list[dict[str, Any]]],
        watchdog: LoopWatchdog,
    ) -> None:
        self._timeout = timeout
        self._describe = describe
        self._watchdog = watchdog
        self._armed = False

    def arm(self) -> None:
        """Start the countdown (once). Safe to call from a signal handler."""
        if not self._armed:
            self._armed = True
            self._watchdog.set_deadline(time.monotonic() + self._timeout, self._exit)

    def _exit(self) -> None:
        try:
            log.critical("shutdown.unstopped", timeout_s=self._timeout, workers=self._describe())
            log.info("service.stopped", exit_code=EXIT_FORCED)
        finally:
            os._exit(EXIT_FORCED)
