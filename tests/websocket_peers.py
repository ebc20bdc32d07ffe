"""A websocket server written by hand (wsproto) over bare TCP on loopback, for tests that
need exact control of the bytes: drop TCP without a close frame, send bytes that are not
frames, stop reading (half-open), never answer the HTTP upgrade. The feed consumer's tests and
the websocket connection's own tests use it.
"""

from __future__ import annotations

import socket
import struct
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Request,
    TextMessage,
)

HOST = "127.0.0.1"


async def until(condition: Callable[[], bool], patience: float = 10.0) -> None:
    """Poll (bounded) for what only polling can see: captured log lines, counters."""
    with trio.fail_after(patience):
        while True:
            if condition():
                return
            await trio.sleep(0.005)


class RawPeer:
    """The server half of a websocket, written by hand over a TCP stream."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.SERVER)
        self._pending: deque[Event] = deque()

    async def next_event(self) -> Event | None:
        """The client's next protocol event; None once it has closed TCP (or reset it)."""
        while not self._pending:
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                return None
            if not data:
                return None
            self.ws.receive_data(data)
            self._pending.extend(self.ws.events())
        return self._pending.popleft()

    async def handshake(self) -> None:
        event = await self.next_event()
        assert isinstance(event, Request), event
        await self.stream.send_all(self.ws.send(AcceptConnection()))

    async def send(self, message: str | bytes) -> None:
        event = TextMessage(data=message) if isinstance(message, str) else BytesMessage(message)
        await self.stream.send_all(self.ws.send(event))

    async def answer_pings(self, count: int) -> None:
        """Answer the client's next `count` pings, then return (and read no more)."""
        while count:
            event = await self.next_event()
            assert isinstance(event, Ping), event
            await self.stream.send_all(self.ws.send(event.response()))
            count -= 1

    async def until_closed(self) -> int | None:
        """Answer pings until the client closes: its close code (None: TCP closed without)."""
        while True:
            event = await self.next_event()
            if event is None:
                return None
            if isinstance(event, Ping):
                await self.stream.send_all(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                await self.stream.send_all(self.ws.send(event.response()))
                return event.code

    async def drop(self, *, reset: bool = False) -> None:
        """Close TCP without a close frame: a FIN, or a RST with `reset`."""
        if reset:
            linger = struct.pack("ii", 1, 0)
            self.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        await self.stream.aclose()


@dataclass
class TcpFeed:
    """A bare TCP server on loopback; connection `number` runs `handler(stream, number)`."""

    handler: Callable[[trio.SocketStream, int], Awaitable[None]]
    port: int = 0
    accepted: int = 0

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/events"

    async def handle(self, stream: trio.SocketStream) -> None:
        self.accepted += 1
        async with stream:
            await self.handler(stream, self.accepted)


@asynccontextmanager
async def tcp_feed(
    handler: Callable[[trio.SocketStream, int], Awaitable[None]],
) -> AsyncIterator[TcpFeed]:
    feed = TcpFeed(handler)
    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, feed.handle, 0, host=HOST))
        feed.port = listener.socket.getsockname()[1]
        yield feed
        nursery.cancel_scope.cancel(reason="the test is over")
