"""SIGTERM and SIGINT handlers that work even while the event loop is blocked.

Trio's `open_signal_receiver` delivers a signal only once the loop runs again; if a worker has
blocked the loop with a synchronous call, the service would never learn it was asked to stop,
and the forced-exit deadline would never be armed. These handlers run in the main thread at
the next bytecode boundary (CPython interrupts `time.sleep` and blocking I/O for them), arm
the deadline at once, and hand the signal to the loop with `TrioToken.run_sync_soon`, which is
safe to call from a signal handler.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_signal_handlers(on_signal: Callable[[signal.Signals], None]) -> Iterator[None]:
    """Route SIGTERM and SIGINT to `on_signal` (called inside the handler) while in the block."""

    def handle(signum: int, frame: FrameType | None) -> None:
        on_signal(signal.Signals(signum))

    previous = {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
