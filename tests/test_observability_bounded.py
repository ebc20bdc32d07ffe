"""Writes that never wait on stdout past their budget, and leave its blocking mode alone."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator

import pytest

from service.observability.bounded import write_within


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


def _fill(write_end: int) -> None:
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"f" * 512)
    except BlockingIOError:
        pass
    finally:
        os.set_blocking(write_end, True)
