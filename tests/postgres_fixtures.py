"""PostgreSQL for the tests: one throwaway server per test session (per pytest-xdist worker).

The server is started by the suite itself from the distribution's binaries, so the tests that
need one run wherever the suite runs (`.ci/run` installs the `postgresql` package). Missing
binaries fail those tests with a message saying what to install: never a silent skip. Each
test gets a database of its own on the shared server; a test that restarts the server starts
a private one (`private_postgres`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.testing.postgres import PostgresCluster, PostgresUnavailable, throwaway_cluster


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """The session's server (initdb and start take about a second)."""
    yield from _cluster()


@pytest.fixture
def pg_url(postgres: PostgresCluster) -> str:
    """The URL of a fresh, empty database of this test's own (with a password in it)."""
    return postgres.create_database()


@pytest.fixture
def private_postgres() -> Iterator[PostgresCluster]:
    """A server of this test's own, for tests that stop or restart it."""
    yield from _cluster()


def _cluster() -> Iterator[PostgresCluster]:
    try:
        with throwaway_cluster() as cluster:
            yield cluster
    except PostgresUnavailable as exc:  # binaries missing, or the server would not start
        pytest.fail(str(exc), pytrace=False)
