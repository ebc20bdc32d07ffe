"""Blocking calls in worker threads that cancellation can interrupt, not just abandon.

`trio.to_thread.run_sync` offers two choices on cancellation: wait for the call to finish (the
cancellation is ignored until then), or abandon the thread (it keeps running, holding whatever
it holds). A database call needs a third: tell the call to stop (`sqlite3.Connection.interrupt`,
psycopg's `cancel_safe`), then wait for the thread to hand its connection back. Cancellation is
prompt, and no thread is left busy behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import outcome
import trio

from service.exception_groups import is_cancelled

T = TypeVar("T")


async def run_interruptible(work: Callable[[], T], interrupt: Callable[[], object]) -> T:
    """Run `work()` in a thread; if cancelled meanwhile, call `interrupt()` and wait for it."""
    finished = trio.Event()
    result: list[outcome.Outcome[T]] = []
    token = trio.lowlevel.current_trio_token()

    def deliver(value: outcome.Outcome[T]) -> None:
        result.append(value)
        token.run_sync_soon(finished.set)

    trio.lowlevel.start_thread_soon(work, deliver)
    try:
        await finished.wait()
    except BaseException as exc:
        if not is_cancelled(exc):
            raise
        interrupt()
        with trio.CancelScope(shield=True):
            await finished.wait()
        raise
    return result[0].unwrap()
