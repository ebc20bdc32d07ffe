"""Real websocket servers on loopback for the feed consumer's tests, with faults on demand.

- `websocket_feed`: trio-websocket's own server; each connection runs a script of the test's.
- `tcp_feed` + `RawPeer` (from `tests.websocket_peers`): a bare TCP server that speaks the
  protocol by hand (wsproto), so a test can do what no well-behaved server does: drop TCP
  without a close frame, send bytes that are not frames, stop reading (half-open), never
  answer the HTTP upgrade.
- `websockets_feed`: the `websockets` library on asyncio, in a process of its own.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import trio_websocket

from tests.websocket_peers import HOST, RawPeer, TcpFeed, tcp_feed, until

__all__ = [  # the hand-written peer is shared with the connection's own tests
    "HOST",
    "WEBSOCKETS_SERVER",
    "ExternalFeed",
    "RawPeer",
    "Script",
    "TcpFeed",
    "WebSocketFeed",
    "bound_not_listening",
    "feed_event",
    "tcp_feed",
    "until",
    "until_closed",
    "websocket_feed",
    "websockets_feed",
]


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
