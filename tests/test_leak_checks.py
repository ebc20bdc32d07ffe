"""The leak checks catch what they exist to catch: each leak provoked on purpose."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CONFTEST = """
pytest_plugins = ["service.testing.plugin"]
"""

INI = f"""
[pytest]
trio_mode = true
filterwarnings = error
pythonpath = {ROOT}
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makeini(INI)
    return pytester


def run(suite: pytest.Pytester, test_source: str) -> pytest.RunResult:
    suite.makepyfile(test_leaky=test_source)
    return suite.runpytest_subprocess("-p", "no:cacheprovider")


def test_a_clean_test_passes(suite: pytest.Pytester) -> None:
    result = run(
        suite,
        """
        import socket, threading, trio

        async def test_tidy(nursery):
            async with trio.open_nursery() as inner:
                inner.start_soon(trio.sleep, 0.01)
            await trio.to_thread.run_sync(lambda: None)  # leaves an idle cached thread: fine
            with socket.socket() as s:
                pass
            thread = threading.Thread(target=lambda: None)
            thread.start()
            thread.join()
        """,
    )
    result.assert_outcomes(passed=1)


def test_catches_a_task_left_running_in_the_nursery_fixture(suite: pytest.Pytester) -> None:
    result = run(
        suite,
        """
        import trio

        async def forgotten():
            await trio.sleep_forever()

        async def test_leaks_task(nursery):
            nursery.start_soon(forgotten)
            await trio.sleep(0)
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*task still running: '*forgotten'*"])


def test_catches_a_thread_still_busy(suite: pytest.Pytester) -> None:
    result = run(
        suite,
        """
        import threading

        stop = threading.Event()

        def test_leaks_thread():
            threading.Thread(target=stop.wait, args=(5,), name="stray-worker").start()

        def teardown_module():
            stop.set()
        """,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*thread still running: 'stray-worker'*"])


def test_catches_a_trio_worker_thread_abandoned_on_cancel(suite: pytest.Pytester) -> None:
    result = run(
        suite,
        """
        import threading, trio

        release = threading.Event()

        async def test_abandons_thread():
            with trio.move_on_after(0.05):
                await trio.to_thread.run_sync(release.wait, 5, abandon_on_cancel=True)

        def teardown_module():
            release.set()
        """,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(['*thread still running: "wait from*'])


def test_catches_an_fd_left_open(suite: pytest.Pytester) -> None:
    result = run(
        suite,
        """
        import os

        kept = []

        def test_leaks_fd():
            kept.append(os.open(os.devnull, os.O_RDONLY))
        """,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*fd * left open: /dev/null*"])


def test_catches_a_resource_warning_from_a_dropped_socket(suite: pytest.Pytester) -> None:
    result = run(
        suite,
        """
        import socket

        def test_drops_socket():
            socket.socket()  # never closed: collected with a ResourceWarning
        """,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*unraisable exception*ResourceWarning*unclosed*socket*"])


def test_catches_an_exception_in_a_finalizer(suite: pytest.Pytester) -> None:
    result = run(
        suite,
        """
        class Broken:
            def __del__(self):
                raise RuntimeError("finalizer failed")

        def test_finalizer():
            Broken()
        """,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*unraisable exception*RuntimeError: finalizer failed*"])
