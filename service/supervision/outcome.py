"""How one run of a worker ended: the outcome taxonomy of the `worker.exited` event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import trio

from service.exception_groups import cancellation_in, without_cancellation

Outcome = Literal["completed", "crashed", "stopped", "cancelled"]


class StartTimeout(Exception):
    """The worker did not call `task_status.started()` within its start timeout."""


@dataclass(frozen=True, slots=True)
class Exit:
    outcome: Outcome
    uptime: float
    started: bool
    error: BaseException | None = None
    cancel_reason: str | None = None


def describe_cancel(exc: trio.Cancelled) -> str:
    """Why Trio cancelled: the reason given to `cancel()`, else the source (deadline, ...)."""
    return exc.reason or str(exc.source)


def classify_error(error: BaseException) -> tuple[Outcome, BaseException | None, str | None]:
    """A raised exception as an outcome: a crash, unless it is only cancellation."""
    cancelled = cancellation_in(error)
    if cancelled is not None:
        return "cancelled", None, describe_cancel(cancelled)
    return "crashed", without_cancellation(error), None
