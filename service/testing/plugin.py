"""A pytest plugin that fails any test leaking a task, a busy thread, an fd or a finalizer error.

Load it from `conftest.py` with `pytest_plugins = ["service.testing.plugin"]`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Generator, Iterator
from typing import Any

import pytest
import trio

from service.testing.leaks import ProcessSnapshot, UnraisableCollector, leaked_tasks


def pytest_configure(config: pytest.Config) -> None:
    # A ResourceWarning is always a leak here: raised, it surfaces as an unraisable exception
    # in the finalizer that emitted it, which the check below catches and attributes.
    config.addinivalue_line("filterwarnings", "error::ResourceWarning")


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    snapshot = ProcessSnapshot()
    with UnraisableCollector().installed() as unraisable:
        yield
    problems = [*unraisable.seen, *snapshot.busy_threads(), *snapshot.new_fds()]
    if problems:
        pytest.fail("leaked by this test:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None]:
    # Runs before pytest-trio wraps the test in `trio.run`, so the check below runs inside
    # the test's own task, right after the test body returns.
    function = getattr(item, "obj", None)
    if (
        item.get_closest_marker("trio") is not None
        and inspect.iscoroutinefunction(function)
        and not hasattr(function, "hypothesis")
    ):
        item.obj = _checking_tasks(function)  # type: ignore[attr-defined]
    yield


def _checking_tasks(
    test: Callable[..., Coroutine[Any, Any, None]],
) -> Callable[..., Coroutine[Any, Any, None]]:
    @functools.wraps(test)
    async def checked(**kwargs: Any) -> None:
        await test(**kwargs)
        leaks = leaked_tasks(trio.lowlevel.current_task())
        if leaks:
            pytest.fail("leaked by this test:\n  " + "\n  ".join(leaks), pytrace=False)

    return checked
