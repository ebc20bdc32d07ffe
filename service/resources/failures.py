"""A resource's own background work that fails: reported to the service, never raised into it.

A resource may keep tasks of its own running beside the workers (PostgreSQL: the migration
retried until the server answers, the notification listener), in a nursery around everything
that uses the resource. An error raised there would cancel that nursery's body: every worker
hard-cancelled at once, no soft stop, no grace, and the service ending with whatever the error
happened to map to. Such a task reports with `report_failure(resource, error)` instead, and
ends; the runtime, which installed its handler with `failures_reported_to(...)` around
opening the resources, logs `resource.failed` and begins the ordered stop with an exit code
that says what happened.

The handler travels in a context variable, so it reaches every task started inside the block
(Trio copies the context into each new task). Without one (a resource opened by a test on its
own) `report_failure` raises the error where it happened, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

FailureHandler = Callable[[str, Exception], None]

_handler: ContextVar[FailureHandler | None] = ContextVar("resource_failure_handler", default=None)


@contextmanager
def failures_reported_to(handler: FailureHandler) -> Iterator[None]:
    """Within the block (and every task started from it), resources report to `handler`."""
    token = _handler.set(handler)
    try:
        yield
    finally:
        _handler.reset(token)


def report_failure(resource: str, error: Exception) -> None:
    """Hand `error`, which ended background work of `resource`, to the service's handler.

    Call it from the `except` block that caught `error`: with no handler it is re-raised.
    """
    handler = _handler.get()
    if handler is None:
        raise error
    handler(resource, error)
