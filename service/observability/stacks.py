"""Stacks as short `file:line in function` strings, for tasks and for threads.

No source lines: `linecache` reads files, which is slow and may block on a busy disk, and the
caller may be a watchdog thread racing a stuck event loop.
"""

from __future__ import annotations

import sys
from types import FrameType

import trio


def frame_line(frame: FrameType, lineno: int | None = None) -> str:
    code = frame.f_code
    return f"{code.co_filename}:{lineno or frame.f_lineno} in {code.co_name}"


def task_stack(task: trio.lowlevel.Task) -> list[str]:
    """Where a suspended task waits: its await frames, outermost first."""
    try:
        return [frame_line(frame, lineno) for frame, lineno in task.iter_await_frames()]
    except (AttributeError, RuntimeError, ValueError):
        # Read from another thread while the task moves on: a torn read, not a failure.
        return []


def thread_stack(thread_id: int) -> list[FrameType]:
    """The frames a thread is executing right now, outermost first."""
    frame: FrameType | None = sys._current_frames().get(thread_id)  # noqa: SLF001
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    return frames
