"""How a worker rides out a database outage: not ready, say why, back off, try again.

A database that is down, restarting or unreachable (`DatabaseUnavailable`) is a state to wait
out, not a bug: crashing the worker would spend the supervisor's restart budget (and, past
`max_restarts`, stop the service) on something no restart fixes. Instead the worker marks
itself not ready (`/readyz` answers 503 with the reason, so traffic goes to other replicas),
logs `db.unavailable` with the reason (at most once per `log_period`; later lines count the
ones suppressed), backs off with full jitter and tries again. The first success after an
outage logs `db.available` with how long it lasted, and the worker is ready again.

    outage = DatabaseOutage(ctx)
    ids = await outage.retry(lambda: table.enqueue([payload]), stop=ctx.stopping)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from service.backoff import Backoff
from service.logs import RateLimitedLog
from service.resources.database import DatabaseUnavailable
from service.worker import WorkerContext

T = TypeVar("T")

#: From a tenth of a second (a connection dropped by a restart is back at once) up to five
#: (a server that is down is retried often enough to notice it is back within seconds).
RETRY = Backoff(0.1, 5.0)


class DatabaseOutage:
    """One worker's view of the database's availability, shared by all of its tasks."""

    def __init__(
        self, ctx: WorkerContext[Any], *, backoff: Backoff = RETRY, log_period: float = 10.0
    ) -> None:
        self._ctx = ctx
        self._backoff = backoff
        self._log = RateLimitedLog(
            ctx.log, "db.unavailable", period=log_period, clock=trio.current_time
        )
        self._since: float | None = None  # when the outage began (Trio time), if one is on
        self._reason: str | None = None  # the not-ready reason this set, to clear only that

    async def retry(
        self, operation: Callable[[], Awaitable[T]], *, stop: trio.Event | None = None
    ) -> T:
        """`await operation()` again and again until the database lets it through.

        If `stop` is set while backing off, the last `DatabaseUnavailable` is raised instead:
        for work the soft stop makes pointless (another claim, another tick).
        """
        failures = 0
        while True:
            try:
                result = await operation()
            except DatabaseUnavailable as exc:
                failures += 1
                self._down(exc)
                delay = self._backoff.delay(failures)
                if stop is None:
                    await trio.sleep(delay)
                    continue
                with trio.move_on_after(delay):
                    await stop.wait()
                if stop.is_set():
                    raise
                continue
            self._up()
            return result

    def _down(self, error: DatabaseUnavailable) -> None:
        if self._since is None:
            self._since = trio.current_time()
        self._reason = f"database unavailable: {error}"
        self._ctx.not_ready(self._reason)
        self._log.warning(reason=str(error))

    def _up(self) -> None:
        if self._since is None:
            return
        self._ctx.log.info(
            "db.available", unavailable_s=round(trio.current_time() - self._since, 3)
        )
        if self._ctx.not_ready_reason == self._reason:  # leave another cause's reason alone
            self._ctx.ready()
        self._since = self._reason = None
