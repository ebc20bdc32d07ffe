"""Real websocket servers on loopback for the feed consumer's tests, with faults on demand.

- `websocket_feed`: trio-websocket's own server; each connection runs a script of the test's.
- `tcp_feed` + `RawPeer`: a bare TCP server that speaks the protocol by hand (wsproto), so a
  test can do what no well-behaved server does: drop TCP without a close frame, send bytes
  that are not frames, stop reading (half-open), never answer the HTTP upgrade.
- `websockets_feed`: the `websockets` library on asyncio, in a process of its own.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import textwrap
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio
import trio_websocket
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


def feed_event(seq: int, kind: str = "price", **data: Any) -> str:
    """One valid feed message, as JSON text."""
    return json.dumps({"type": kind, "seq": seq, "data": data})


# --- trio-websocket's server ----------------------------------------------------------------

Script = Callable[[trio_websocket.WebSocketConnection, int], Awaitable[None]]


@dataclass
class WebSocketFeed:
    """A trio-websocket server; connection `number` (1, 2, ...) runs `script(conn, number)`."""

    script: Script
    accept_gate: trio.Event | None = None
    port: int = 0
    accepted: int = 0
    #: How each connection ended, as this server saw it (None: no close frame), by number.
    closes: dict[int, trio_websocket.CloseReason | None] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/events"

    async def handle(self, request: trio_websocket.WebSocketRequest) -> None:
        if self.accept_gate is not None:
            await self.accept_gate.wait()
        connection = await request.accept()
        self.accepted += 1
        number = self.accepted
        with suppress(trio_websocket.ConnectionClosed):
            await self.script(connection, number)
        self.closes[number] = connection.closed

    def close_codes(self) -> list[int | None]:
        return [None if why is None else why.code for _, why in sorted(self.closes.items())]


async def until_closed(connection: trio_websocket.WebSocketConnection) -> None:
    """Read (and drop) whatever the client sends until it closes the connection."""
    while True:
        await connection.get_message()


@asynccontextmanager
async def websocket_feed(
    script: Script,
    *,
    accept_gate: trio.Event | None = None,
    listener: trio.SocketListener | None = None,
) -> AsyncIterator[WebSocketFeed]:
    """Serve on loopback, on a fresh port or on `listener`; stop serving at the end."""
    feed = WebSocketFeed(script, accept_gate)
    listeners = [listener] if listener else await trio.open_tcp_listeners(0, host=HOST)
    async with trio.open_nursery() as nursery:
        server = trio_websocket.WebSocketServer(
            feed.handle, listeners, handler_nursery=nursery, disconnect_timeout=2.0
        )
        await nursery.start(server.run)
        feed.port = server.port
        yield feed
        nursery.cancel_scope.cancel(reason="the test is over")


# --- bare TCP, the protocol by hand ---------------------------------------------------------


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


def bound_not_listening() -> trio.socket.SocketType:
    """A loopback socket bound to a port but not listening: connections to it are refused
    until `listen()`, and no other process can take the port meanwhile."""
    sock = socket.socket()
    sock.bind((HOST, 0))
    return trio.socket.from_stdlib_socket(sock)


# --- the `websockets` library on asyncio, in a process of its own ---------------------------

WEBSOCKETS_SERVER = """
    import asyncio
    import json
    import sys

    from websockets.asyncio.server import serve

    COUNT = int(sys.argv[1])


    async def publish(connection):
        for seq in range(COUNT):
            kind = "order" if seq % 5 == 4 else "price"
            await connection.send(json.dumps({"type": kind, "seq": seq, "data": {"n": seq}}))
        await connection.wait_closed()
        print("closed", connection.close_code, flush=True)


    async def main():
        async with serve(publish, "127.0.0.1", 0, compression=None) as server:
            print("port", server.sockets[0].getsockname()[1], flush=True)
            await server.serve_forever()


    asyncio.run(main())
"""


class ExternalFeed:
    """A `websockets` server process: `url`, and the lines it printed."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._buffer = b""
        self.url = ""

    async def wait_line(self, prefix: str) -> str:
        """Read until a line starting with `prefix` (the first one not yet returned)."""
        seen = 0
        while True:
            for line in self.lines[seen:]:
                if line.startswith(prefix):
                    self.lines.remove(line)
                    return line
            seen = len(self.lines)
            assert self.process.stdout is not None
            chunk = await self.process.stdout.receive_some()
            if not chunk:
                raise AssertionError(f"the server exited; it printed {self.lines}")
            self._buffer += chunk
            *complete, self._buffer = self._buffer.split(b"\n")
            self.lines.extend(raw.decode() for raw in complete)


@asynccontextmanager
async def websockets_feed(directory: Path, count: int) -> AsyncIterator[ExternalFeed]:
    """A `websockets` server that sends `count` feed events per connection, then waits for
    the close and prints `closed <code>`."""
    script = directory / "websockets_feed.py"
    script.write_text(textwrap.dedent(WEBSOCKETS_SERVER), encoding="utf-8")
    process = await trio.lowlevel.open_process(
        [sys.executable, str(script), str(count)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    feed = ExternalFeed(process)
    try:
        with trio.fail_after(20):
            port = (await feed.wait_line("port ")).split()[1]
        feed.url = f"ws://{HOST}:{port}/events"
        yield feed
    finally:
        with trio.CancelScope(shield=True):
            process.terminate()
            await process.wait()
            assert process.stdout is not None
            await process.stdout.aclose()
