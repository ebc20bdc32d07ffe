"""Log lines from the watchdog's thread, never waiting on the log lock or stdout for long.

Log lines are written under one lock (`service.logs.Output.lock`). When stdout is a pipe
nobody drains (a stuck log collector, a paused `| less`) the thread that is writing blocks
inside that lock, and every other thread that logs waits behind it: logs are back-pressure,
and the event loop stalls. The watchdog's thread exists for exactly that moment, so its
reports (`loop.stalled`, and the forced exit's `shutdown.unstopped`) must not queue there.
`bounded_logger` renders them with the service's own processors (the same format as every
other line) and writes them within a budget: under the lock if it is free within the budget
(so lines never interleave), past it otherwise, always in writes that cannot block. What
stdout has not taken when the budget is spent is dropped: a report lost to a blocked stdout
could not have been read anyway, and a forced exit delayed by it would be a process that
never ends.

A line written past the lock starts with a newline: the writer holding the lock may be stuck
halfway through a line of its own, and the report must be a line a parser can read
(`LogLines` skips the blank one).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import stat
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import structlog

from service.logs import current_output

#: The largest write a pipe takes in one piece, or refuses whole (POSIX: at least 512).
_CHUNK = 512


def bounded_logger(*, budget: float) -> Any:
    """A structlog logger like `structlog.get_logger()`, rendered by the configured
    processors, whose lines go to the configured output through a `BoundedWriter`: at most
    `budget` seconds a line, never blocked by the log lock or by stdout."""
    return structlog.wrap_logger(BoundedWriter(budget))


class BoundedWriter:
    """A structlog logger (what `wrap_logger` wraps) that writes each line within a budget."""

    def __init__(self, budget: float) -> None:
        self._budget = budget

    def msg(self, message: str) -> None:
        deadline = time.monotonic() + self._budget
        output = current_output()
        try:
            fd: int | None = output.stream.fileno()
        except (AttributeError, OSError, ValueError):  # an in-memory stream: it cannot block
            fd = None
        if output.lock.acquire(timeout=self._budget):
            try:
                if fd is None:
                    with contextlib.suppress(ValueError, OSError):  # closed: nobody to tell
                        output.stream.write(message + "\n")
                else:
                    write_within(fd, f"{message}\n".encode(), deadline)
            finally:
                output.lock.release()
        elif fd is not None:  # the lock's holder is stuck in a write: a line of our own
            write_within(fd, f"\n{message}\n".encode(), deadline)

    debug = info = warning = error = critical = exception = msg


def write_within(fd: int, data: bytes, deadline: float) -> int:
    """Write what `fd` takes of `data` until `time.monotonic()` reaches `deadline`, without
    ever blocking past it; return how many bytes went out. Errors count as nothing written."""
    try:
        with _non_blocking(fd) as (write, waitable):
            return _pump(write, waitable, data, deadline)
    except OSError:  # no /proc, no reader left, a closed fd: nobody would read it
        return 0


@contextlib.contextmanager
def _non_blocking(fd: int) -> Iterator[tuple[Callable[[bytes], int], int | socket.socket]]:
    """How to write to `fd` without blocking, and what to poll while it is full.

    A pipe through a non-blocking open file description of its own (reopened through /proc,
    so the service's own stdout stays blocking); a socket with `MSG_DONTWAIT`; a terminal
    only once `poll` says there is room. A regular file as it is: a disk write does not wait
    on a reader.
    """
    mode = os.fstat(fd).st_mode
    if stat.S_ISFIFO(mode):
        own = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            yield partial(os.write, own), own
        finally:
            os.close(own)
    elif stat.S_ISSOCK(mode):
        with socket.socket(fileno=os.dup(fd)) as sock:
            yield (lambda chunk: sock.send(chunk, socket.MSG_DONTWAIT)), sock
    elif stat.S_ISREG(mode):
        yield partial(os.write, fd), fd
    else:
        yield partial(_write_when_ready, fd), fd


def _write_when_ready(fd: int, chunk: bytes) -> int:
    """On a blocking descriptor: write only if `poll` says it has room now."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    if not poller.poll(0):
        raise BlockingIOError
    return os.write(fd, chunk)


def _pump(
    write: Callable[[bytes], int], waitable: int | socket.socket, data: bytes, deadline: float
) -> int:
    """Write `data` in chunks a pipe takes whole or not at all, polling while it is full."""
    poller = select.poll()
    poller.register(waitable, select.POLLOUT)
    written = 0
    while written < len(data):
        try:
            written += write(data[written : written + _CHUNK])
            continue
        except BlockingIOError:
            pass
        except OSError:
            return written
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(max(1, int(remaining * 1000))):
            return written
    return written
