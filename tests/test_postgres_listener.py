"""The PostgreSQL listener against a flapping server, in virtual time (no server needed).

A server that accepts the listener's connection and drops it at once must not make the
listener reconnect in a tight loop, nor flood the log: the backoff grows until a connection
stays up, and `db.listener_down` is rate-limited.
"""

from __future__ import annotations

import random

import psycopg
import pytest
import trio
from psycopg_pool import ConnectionPool

from service import backoff
from service.resources import postgres
from service.resources.postgres import PgConnection, PostgresDatabase
from tests.conftest import Events

URL = "postgresql://service@127.0.0.1:1/jobs"


class FakeConnection:
    def close(self) -> None:
        pass


class FlappingServer:
    """Connections succeed; each stays up `up_for` seconds of virtual time, then drops."""

    def __init__(self) -> None:
        self.connects = 0
        self.up_for = 0.0

    async def connect(self) -> PgConnection:
        await trio.lowlevel.checkpoint()
        self.connects += 1
        return FakeConnection()  # type: ignore[return-value]

    async def forward(self, connection: PgConnection) -> None:
        await trio.sleep(self.up_for)
        raise psycopg.OperationalError("server closed the connection unexpectedly")


async def listen_for(seconds: float, server: FlappingServer) -> None:
    pool: ConnectionPool[PgConnection] = ConnectionPool(URL, open=False, min_size=1, max_size=1)
    async with trio.open_nursery() as nursery:
        database = PostgresDatabase(URL, URL, pool, nursery, listen=True)
        database._connect_listener = server.connect  # type: ignore[method-assign]  # noqa: SLF001
        database._forward = server.forward  # type: ignore[method-assign,assignment]  # noqa: SLF001
        with trio.move_on_after(seconds):
            await database._listen_forever()  # noqa: SLF001


@pytest.fixture(autouse=True)
def _seeded_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backoff, "_random", random.Random(11))


async def test_a_server_that_drops_each_connection_at_once_is_retried_ever_more_slowly(
    events: Events, autojump_clock: object
) -> None:
    server = FlappingServer()
    await listen_for(300, server)
    # Backing off to the 10 s cap: a few dozen attempts in five minutes, not thousands.
    assert server.connects < 100
    down = events.named("db.listener_down")
    period = postgres.LISTENER_DOWN_LOG_PERIOD_S
    assert len(down) <= 300 / period + 1
    assert sum(line["suppressed"] for line in down) + len(down) == server.connects


async def test_a_connection_that_stayed_up_starts_the_backoff_anew(
    events: Events, autojump_clock: object
) -> None:
    server = FlappingServer()
    server.up_for = postgres.LISTENER_STABLE_S + 1
    await listen_for(postgres.LISTENER_STABLE_S * 5, server)
    delays = [line["retry_in_s"] for line in events.named("db.listener_down")]
    ceiling = postgres.LISTENER_RECONNECT.ceiling(1)
    assert delays
    assert all(delay <= ceiling for delay in delays), delays  # each loss is a first failure
