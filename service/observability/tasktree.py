"""The task tree: every live task, where it waits, identical siblings grouped; text and JSON.

Go's goroutine dump for Trio, from public API only: `current_root_task()`, each task's
`child_nurseries` and their `child_tasks`, and `Task.iter_await_frames()`. A dump runs on the
event loop (the tree must not change under it), so its time is a pause of the whole service,
and it is built to be short:

- Siblings with the same name, worker, await stack and (recursively) the same children are
  one entry with a count, so 10,000 connections parked in one place are one line (`×10,000`).
- Frames are keyed by code object and line; only one frame per entry is formatted as text,
  and never with source lines (`linecache` reads files: slow, and it may block on a disk).

Where a task is blocked is its innermost await frame outside Trio (the user's `await`), with
the Trio function it is waiting in: Trio's own innermost frames are the same for every task.
Ages are known for worker tasks (the supervisor's start time of the current attempt); Trio
keeps no spawn time, and recording one on every spawn costs more than it is worth.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import CodeType, FrameType
from typing import Any

import trio

Frame = tuple[CodeType, int]

_TRIO_DIR = os.path.dirname(trio.__file__) + os.sep


@dataclass(frozen=True, slots=True)
class WorkerTask:
    """What the supervisor knows about a worker's task: its name and its attempt's start."""

    worker: str
    started_at: float | None


@dataclass(slots=True)
class TaskEntry:
    """One task, or `count` identical siblings, and their children."""

    name: str
    worker: str | None
    count: int
    age: float | None  # the oldest of the group, in seconds, when known
    stack: tuple[Frame, ...]  # outermost first
    children: list[TaskEntry]
    key: tuple[Any, ...] = field(repr=False)

    @property
    def tasks(self) -> int:
        """How many tasks this entry stands for, its groups' children included."""
        return self.count * (1 + sum(child.tasks for child in self.children))

    @property
    def blocked_on(self) -> str:
        """The innermost await outside Trio, and the Trio function it waits in, if any."""
        if not self.stack:
            return "(no await frames)"
        outside = [i for i, (code, _) in enumerate(self.stack) if not _in_trio(code)]
        if not outside:
            return where(*self.stack[0])
        last = outside[-1]
        text = where(*self.stack[last])
        if last + 1 < len(self.stack):
            text += f" (awaiting {self.stack[last + 1][0].co_qualname})"
        return text


@dataclass(slots=True)
class TaskTree:
    root: TaskEntry

    @property
    def total(self) -> int:
        return self.root.tasks

    def lines(self) -> list[str]:
        """The tree for people: one line per entry, drawn with box characters."""
        out = [f"{self.total:,} tasks (identical siblings grouped: ×count)"]
        out.append(_describe(self.root))
        _draw(self.root.children, "", out)
        return out

    def text(self) -> str:
        return "\n".join(self.lines()) + "\n"

    def as_json(self) -> dict[str, Any]:
        """The tree for tools: every entry with its whole await stack, outermost first."""
        return {"tasks": self.total, "root": _entry_json(self.root)}


def snapshot(
    root: trio.lowlevel.Task,
    *,
    workers: Mapping[trio.lowlevel.Task, WorkerTask],
    now: float,
) -> TaskTree:
    """Walk the tree under `root` (on the event loop: it must not change meanwhile)."""
    [entry] = _group([root], None, workers, now)
    return TaskTree(entry)


def where(code: CodeType, lineno: int) -> str:
    """`path:line in function`, the path relative to its entry on `sys.path`."""
    return f"{_short_path(code.co_filename)}:{lineno} in {code.co_name}"


def running_task(
    root: trio.lowlevel.Task, frames: Iterable[FrameType]
) -> trio.lowlevel.Task | None:
    """The task whose coroutine is among `frames` (a thread's stack), if any.

    For a watchdog that sees the loop thread stuck: the loop is not moving, so the tree can be
    walked from another thread; a torn read (the loop moved on after all) finds nothing.
    """
    outermost = {id(frame) for frame in frames}
    pending = [root]
    try:
        while pending:
            task = pending.pop()
            if id(task.coro.cr_frame) in outermost:
                return task
            pending.extend(child for n in task.child_nurseries for child in n.child_tasks)
    except RuntimeError:
        pass
    return None


def _group(
    tasks: Iterable[trio.lowlevel.Task],
    owner: str | None,
    workers: Mapping[trio.lowlevel.Task, WorkerTask],
    now: float,
) -> list[TaskEntry]:
    groups: dict[tuple[Any, ...], TaskEntry] = {}
    for task in tasks:
        known = workers.get(task)
        worker = known.worker if known is not None else owner
        age = now - known.started_at if known is not None and known.started_at is not None else None
        stack = tuple((frame.f_code, lineno) for frame, lineno in task.iter_await_frames())
        children = _group(
            (child for nursery in task.child_nurseries for child in nursery.child_tasks),
            worker,
            workers,
            now,
        )
        key = (task.name, worker, stack, frozenset((c.key, c.count) for c in children))
        entry = groups.get(key)
        if entry is None:
            groups[key] = TaskEntry(task.name, worker, 1, age, stack, children, key)
        else:
            entry.count += 1
            if age is not None and (entry.age is None or age > entry.age):
                entry.age = age
    return sorted(groups.values(), key=lambda e: (-e.count, e.name))


def _describe(entry: TaskEntry) -> str:
    count = f"×{entry.count:,} " if entry.count > 1 else ""
    labels = [f"worker {entry.worker}"] if entry.worker else []
    if entry.age is not None:
        labels.append(f"up {entry.age:.1f}s")
    label = f" [{', '.join(labels)}]" if labels else ""
    return f"{count}{entry.name}{label}  {entry.blocked_on}"


def _draw(children: list[TaskEntry], indent: str, out: list[str]) -> None:
    for i, child in enumerate(children):
        last = i == len(children) - 1
        out.append(f"{indent}{'└─ ' if last else '├─ '}{_describe(child)}")
        _draw(child.children, indent + ("   " if last else "│  "), out)


def _entry_json(entry: TaskEntry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "count": entry.count,
        "worker": entry.worker,
        "age_s": None if entry.age is None else round(entry.age, 3),
        "blocked_on": entry.blocked_on,
        "stack": [where(*frame) for frame in entry.stack],
        "children": [_entry_json(child) for child in entry.children],
    }


def _in_trio(code: CodeType) -> bool:
    return code.co_filename.startswith(_TRIO_DIR)


@lru_cache(maxsize=1024)
def _short_path(filename: str) -> str:
    prefixes = [os.path.join(os.path.abspath(p), "") for p in sys.path if p]
    matches = [p for p in prefixes if filename.startswith(p)]
    return filename[len(max(matches, key=len)) :] if matches else filename
