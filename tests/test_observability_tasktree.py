"""The task tree: thousands of tasks in a few lines, with where each waits, as text and JSON."""

from __future__ import annotations

import threading
from typing import Any

import trio
import trio.testing

from service.observability.stacks import thread_stack
from service.observability.tasktree import TaskTree, WorkerTask, running_task, snapshot

HERE = "test_observability_tasktree.py"


def tree_now(workers: dict[trio.lowlevel.Task, WorkerTask] | None = None) -> TaskTree:
    root = trio.lowlevel.current_root_task()
    assert root is not None
    return snapshot(root, workers=workers or {}, now=trio.current_time())


def named(entry: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Every entry whose task name ends with `name`, depth first."""
    found = [entry] if entry["name"].endswith(name) else []
    for child in entry["children"]:
        found += named(child, name)
    return found


def find(entry: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = named(entry, name)
    return found


async def parked(release: trio.Event) -> None:
    await release.wait()


async def holder(count: int, release: trio.Event, *, task_status: trio.TaskStatus[None]) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(parked, release)
        task_status.started()
        await release.wait()


async def test_thousands_of_identical_tasks_are_one_line() -> None:
    release = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(holder, 3_000, release)
        await trio.testing.wait_all_tasks_blocked()
        tree = tree_now()
        release.set()
    lines = tree.lines()
    assert tree.total >= 3_002
    assert lines[0].startswith(f"{tree.total:,} tasks")
    [group] = [line for line in lines if "×3,000" in line]
    assert "parked" in group
    assert f"{HERE}:" in group
    assert "in parked (awaiting Event.wait)" in group  # where it waits, and on what
    assert len(lines) < 12


async def test_json_has_every_entry_with_its_whole_stack() -> None:
    release = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(holder, 500, release)
        await trio.testing.wait_all_tasks_blocked()
        document = tree_now().as_json()
        release.set()
    assert document["tasks"] >= 502
    owner = find(document["root"], "holder")
    assert owner["count"] == 1
    [children] = owner["children"]
    assert children["count"] == 500
    assert children["name"].endswith("parked")
    assert children["stack"][0].startswith(f"{HERE}:")  # outermost first
    assert children["stack"][0].endswith("in parked")
    assert any("trio/" in frame for frame in children["stack"][1:])
    assert children["blocked_on"].startswith(f"{HERE}:")


async def test_workers_name_their_subtree_and_have_an_age(autojump_clock: object) -> None:
    release = trio.Event()
    async with trio.open_nursery() as nursery:
        await trio.sleep(100)
        await nursery.start(holder, 10, release)
        [task] = [t for t in nursery.child_tasks if t.name.endswith("holder")]
        await trio.sleep(42)
        document = tree_now({task: WorkerTask("reporter", started_at=100.0)}).as_json()
        text = tree_now({task: WorkerTask("reporter", started_at=100.0)}).text()
        release.set()
    owner = find(document["root"], "holder")
    assert owner["worker"] == "reporter"
    assert owner["age_s"] == 42.0
    [children] = owner["children"]
    assert children["worker"] == "reporter"  # inherited
    assert children["age_s"] is None  # Trio keeps no spawn time
    assert "[worker reporter, up 42.0s]" in text


async def test_siblings_with_different_children_are_not_grouped() -> None:
    release = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(holder, 2, release)
        await nursery.start(holder, 2, release)
        await nursery.start(holder, 3, release)
        await trio.testing.wait_all_tasks_blocked()
        document = tree_now().as_json()
        release.set()
    holders = [(e["count"], e["children"][0]["count"]) for e in named(document["root"], "holder")]
    assert sorted(holders) == [(1, 3), (2, 2)]


async def test_finds_the_task_running_on_a_thread_stack() -> None:
    root = trio.lowlevel.current_root_task()
    assert root is not None
    frames = thread_stack(threading.get_ident())
    assert running_task(root, frames) is trio.lowlevel.current_task()
    assert running_task(root, []) is None
