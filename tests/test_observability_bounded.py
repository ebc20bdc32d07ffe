"""Writes that never wait on stdout past their budget, and leave its blocking mode alone."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator

import pytest

from service import logs
from service.observability.bounded import BoundedWriter, write_within


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, 4096)
    yield read_end, write_end
    os.close(read_end)
    os.close(write_end)


def test_a_pipe_with_room_takes_the_whole_line(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    assert write_within(write_end, b"x" * 3000, time.monotonic() + 5) == 3000
    assert os.read(read_end, 4096) == b"x" * 3000


def test_a_full_pipe_is_given_up_on_at_the_deadline(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    _fill(write_end)
    # A plain os.write here would block for ever: nobody reads.
    assert write_within(write_end, b"report\n", time.monotonic() + 0.05) == 0
    assert os.get_blocking(write_end)  # the service's own stdout is left as it was
    os.read(read_end, 4096)  # room again: the next report goes out
    assert write_within(write_end, b"report\n", time.monotonic() + 5) == len(b"report\n")


@pytest.mark.usefixtures("restore_logging")
def test_a_line_takes_the_log_lock_if_free_and_goes_past_a_stuck_holder(
    pipe: tuple[int, int],
) -> None:
    read_end, write_end = pipe
    with os.fdopen(os.dup(write_end), "w") as stream:
        logs.configure(log_format="json", stream=stream)
        writer = BoundedWriter(budget=0.05)
        writer.msg('{"event": "free"}')
        with logs.current_output().lock:  # a thread stuck in a write, inside the lock
            writer.msg('{"event": "past"}')
    # Under the lock a line as any other; past it, on a line of its own.
    assert os.read(read_end, 4096) == b'{"event": "free"}\n\n{"event": "past"}\n'


def _fill(write_end: int) -> None:
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"f" * 512)
    except BlockingIOError:
        pass
    finally:
        os.set_blocking(write_end, True)
