"""How one run of a worker ended: the outcome taxonomy of the `worker.exited` event."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import trio

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


def cancellation_in(error: BaseException) -> trio.Cancelled | None:
    """The `Cancelled` an exception amounts to: itself, or the first of a group of only those."""
    if isinstance(error, trio.Cancelled):
        return error
    if isinstance(error, BaseExceptionGroup):
        cancelled, rest = error.split(trio.Cancelled)
        if cancelled is not None and rest is None:
            first = next(_leaves(cancelled))
            assert isinstance(first, trio.Cancelled)
            return first
    return None


def classify_error(error: BaseException) -> tuple[Outcome, BaseException | None, str | None]:
    """A raised exception as an outcome: a crash, unless it is only cancellation."""
    cancelled = cancellation_in(error)
    if cancelled is not None:
        return "cancelled", None, describe_cancel(cancelled)
    if isinstance(error, BaseExceptionGroup):
        _, rest = error.split(trio.Cancelled)
        assert rest is not None
        return "crashed", rest, None
    return "crashed", error, None


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc
