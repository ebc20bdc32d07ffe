"""The consumer: each message in a unit of work, a reconnect, a clean close at the stop.

The feed is a real websocket server on loopback, run by the test; each connection to it runs
a script of the test's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing
import trio_websocket

import service.workers.my_worker as worker_module
from service import WorkerContext
from service.testing import supervised
from service.workers.my_worker import Message, MyWorkerSettings, my_worker
from tests.conftest import Events

PATIENCE_S = 10.0
Script = Callable[[trio_websocket.WebSocketConnection, int], Awaitable[None]]


@dataclass
class Feed:
    url: str = ""
    #: How each connection ended, as the server saw it (None: dropped without a close frame).
    closes: list[trio_websocket.CloseReason | None] = field(default_factory=list)
    accepted: int = 0
    all_closed: trio.Event = field(default_factory=trio.Event)


@asynccontextmanager
async def feed(script: Script) -> AsyncIterator[Feed]:
    """Serve on a free loopback port; connection `number` (1, 2, ...) runs `script`.

    Leaving the block waits for the connections to end, so `closes` is complete.
    """
    served = Feed()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")

    async def serve(request: trio_websocket.WebSocketRequest) -> None:
        connection = await request.accept()
        served.accepted += 1
        try:
            await script(connection, served.accepted)
            while True:  # then read until the client closes
                await connection.get_message()
        except trio_websocket.ConnectionClosed:
            pass
        served.closes.append(connection.closed)
        if len(served.closes) == served.accepted:
            served.all_closed.set()

    async with trio.open_nursery() as nursery:
        server = trio_websocket.WebSocketServer(
            serve, listeners, handler_nursery=nursery, disconnect_timeout=2.0
        )
        await nursery.start(server.run)
        served.url = f"ws://127.0.0.1:{server.port}/events"
        yield served
        if served.accepted:
            with trio.fail_after(PATIENCE_S):
                await served.all_closed.wait()
        nursery.cancel_scope.cancel(reason="the test is over")


def count_handled(monkeypatch: pytest.MonkeyPatch, expected: int) -> trio.Event:
    """Wrap `handle`; the event is set once it has returned `expected` times."""
    handled = trio.Event()
    calls = 0
    original = worker_module.handle

    async def counting(ctx: WorkerContext[MyWorkerSettings], message: Message) -> None:
        nonlocal calls
        await original(ctx, message)
        calls += 1
        if calls == expected:
            handled.set()

    monkeypatch.setattr(worker_module, "handle", counting)
    return handled


async def test_each_message_is_handled_in_its_own_unit_of_work_and_the_stop_closes_with_1000(
    events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def three_messages(connection: trio_websocket.WebSocketConnection, _: int) -> None:
        for text in ("one", "two", "three"):
            await connection.send_message(text)

    handled = count_handled(monkeypatch, 3)
    async with feed(three_messages) as served:
        settings = {"my_worker": MyWorkerSettings(url=served.url)}
        async with supervised(my_worker, settings=settings) as supervisor:
            await supervisor.ready.wait()
            with trio.fail_after(PATIENCE_S):
                await handled.wait()
            assert supervisor.not_ready_reasons() == []
    messages = events.named("my_worker.message", worker="my_worker")
    assert [line["size"] for line in messages] == [3, 3, 5]
    assert len({line["trace_id"] for line in messages}) == 3
    assert [close.code if close else None for close in served.closes] == [1000]
    assert events.named("worker.exited", worker="my_worker")[0]["outcome"] == "stopped"


async def test_a_connection_the_server_closes_is_made_again(
    events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def close_the_first(connection: trio_websocket.WebSocketConnection, number: int) -> None:
        await connection.send_message(f"connection {number}")
        if number == 1:
            await connection.aclose(code=1011, reason="restarting")

    handled = count_handled(monkeypatch, 2)
    async with feed(close_the_first) as served:
        settings = {"my_worker": MyWorkerSettings(url=served.url, reconnect_initial=0.01)}
        async with supervised(my_worker, settings=settings) as supervisor:
            await supervisor.ready.wait()
            with trio.fail_after(PATIENCE_S):
                await handled.wait()
    assert len(events.named("my_worker.connected")) == 2
    [disconnected] = events.named("my_worker.disconnected")
    assert "1011" in disconnected["reason"]
    assert [close.code if close else None for close in served.closes] == [1011, 1000]


async def test_not_ready_while_the_feed_refuses_and_the_stop_ends_the_retries(
    autojump_clock: trio.testing.MockClock, events: Events
) -> None:
    with trio.socket.socket() as reserved:  # a port nobody listens on
        await reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        settings = {"my_worker": MyWorkerSettings(url=f"ws://127.0.0.1:{port}/")}
        async with supervised(my_worker, settings=settings) as supervisor:
            await supervisor.ready.wait()
            await trio.sleep(60)  # virtual seconds: several attempts and backoffs
            [reason] = supervisor.not_ready_reasons()
            assert "my_worker" in reason
    assert len(events.named("my_worker.disconnected")) >= 2
    assert events.named("my_worker.connected") == []
    assert events.named("worker.exited", worker="my_worker")[0]["outcome"] == "stopped"
