"""Feed consumer throughput, 100-byte messages, vs a raw trio-websocket `get_message` loop.

The server is an external process (the `websockets` library on asyncio, no compression) that
blasts N valid feed events per connection, each exactly 100 bytes of JSON (`{"type": "price",
"seq": ..., "data": {...}}`, padded), prepared before the first connection, then waits for the
client to close. Every client below connects to that same server, in this process, one after
the other, alternating which goes first over the rounds; each is timed from its first message
to its N-th (so connecting and the handshake stay out), and the medians are reported.

Two clocks: wall time (msgs/s, what a user sees) and this process's CPU time (msgs per CPU
second). The Trio clients are CPU-bound (the server keeps ahead of them), so on a quiet
machine the two agree; on a shared one the CPU figures are the steadier ratio. The
`websockets` client can outrun the server: its wall figure is then the server's pace (a lower
bound), and its CPU figure the client's own cost.

- candidate: the real `feed_consumer` worker under the real supervisor (`supervised`), default
  settings (4 handlers, queue of 64, heartbeat every 5 s), the real JSON log pipeline writing
  to /dev/null; `handle_event` is replaced by one that only counts. Each message is read,
  validated (`FeedEvent`), queued, taken by a handler, wrapped in its unit of work (trace_id).
- baseline: a raw trio-websocket loop, `open_websocket_url` + `get_message()` N times.
- also reported: the raw loop plus the consumer's validation (`parse`) of each message, where
  the candidate's overhead starts; and the `websockets` client on asyncio against the same
  server, the peer figure (FIELD-NOTES: ~14k msgs/s raw trio-websocket, ~40k websockets).

Target: consumer >= 0.85x the raw loop (msgs/s, higher is better).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import _common
import trio
import trio_websocket
from websockets.asyncio.client import connect as websockets_connect

import service
import service.workers.feed_consumer as consumer_module
from service import logs
from service.resources.sqlite import open_sqlite
from service.testing import provide, supervised
from service.workers.feed_consumer import FeedConsumerSettings, feed_consumer

BENCH = "feed_throughput"
MESSAGE_SIZE = 100

SERVER = """
    import asyncio
    import json
    import sys

    from websockets.asyncio.server import serve

    COUNT, SIZE = int(sys.argv[1]), int(sys.argv[2])


    def message(seq):
        head = {"type": "price", "seq": seq, "data": {"symbol": "TRIO", "pad": ""}}
        text = json.dumps(head, separators=(",", ":"))
        head["data"]["pad"] = "x" * (SIZE - len(text))
        text = json.dumps(head, separators=(",", ":"))
        assert len(text) == SIZE, text
        return text


    MESSAGES = [message(seq) for seq in range(COUNT)]


    async def blast(connection):
        for text in MESSAGES:
            await connection.send(text)
        await connection.wait_closed()


    async def main():
        async with serve(blast, "127.0.0.1", 0, compression=None, max_queue=None) as server:
            print(server.sockets[0].getsockname()[1], flush=True)
            await server.serve_forever()


    asyncio.run(main())
"""


class Stopwatch:
    """Wall and CPU time from the first message to the N-th."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.first = (0.0, 0.0)
        self.last = (0.0, 0.0)
        self.done = trio.Event()

    def tick(self, count: int = 1) -> None:
        if self.count == 0:
            self.first = (time.perf_counter(), time.process_time())
        self.count += count
        if self.count >= self.n and not self.done.is_set():
            self.last = (time.perf_counter(), time.process_time())
            self.done.set()

    def rates(self) -> tuple[float, float]:
        """(msgs per wall second, msgs per CPU second), the first message not counted."""
        wall = self.last[0] - self.first[0]
        cpu = self.last[1] - self.first[1]
        return (self.n - 1) / wall, (self.n - 1) / cpu


class Counter(Stopwatch):
    """Stands in for `handle_event`: only counts."""

    async def __call__(self, event: Any, **_: Any) -> None:
        self.tick()


async def consumer(url: str, n: int) -> tuple[float, float]:
    """Messages per second through the real worker."""
    counter = Counter(n)
    original = consumer_module.handle_event
    consumer_module.handle_event = counter  # type: ignore[assignment]
    try:
        settings = {"feed_consumer": FeedConsumerSettings(url=url)}
        async with (
            open_sqlite("sqlite:///:memory:") as db,
            supervised(feed_consumer, settings=settings, resources=[provide(service.db, db)]),
        ):
            with trio.fail_after(120):
                await counter.done.wait()
    finally:
        consumer_module.handle_event = original
    return counter.rates()


async def raw(url: str, n: int, *, validate: bool = False) -> tuple[float, float]:
    """Messages per second through a bare trio-websocket `get_message` loop."""
    watch = Stopwatch(n)
    async with trio_websocket.open_websocket_url(url) as ws:
        for _ in range(n):
            message = await ws.get_message()
            if validate:
                consumer_module.parse(message, 65_536)
            watch.tick()
    return watch.rates()


async def websockets_asyncio(url: str, n: int) -> tuple[float, float]:
    """Messages per second through the `websockets` client on asyncio."""
    watch = Stopwatch(n)
    async with websockets_connect(url, compression=None) as ws:
        for _ in range(n):
            await ws.recv()
            watch.tick()
    return watch.rates()


def main() -> None:
    args = _common.parse_args(__doc__)
    n, rounds = (30_000, 3) if args.quick else (150_000, 5)
    logs.configure(log_format="json", stream=open(os.devnull, "w"))  # noqa: SIM115
    runs: dict[str, Callable[[str], tuple[float, float]]] = {
        "consumer": lambda url: trio.run(consumer, url, n),
        "raw": lambda url: trio.run(raw, url, n),
        "raw_validate": lambda url: trio.run(partial(raw, url, n, validate=True)),
        "websockets": lambda url: asyncio.run(websockets_asyncio(url, n)),
    }
    wall, per_cpu = _common.alternate_against_server(rounds, runs, SERVER, n, MESSAGE_SIZE)
    lines = (
        ("consumer", "ratio >= 0.85"),
        ("raw_validate", "info: the raw loop plus parse() of each message"),
        ("websockets", "info: peer figure, the websockets client on asyncio"),
    )
    for name, target in lines:
        metric = {"consumer": "consumer", "raw_validate": "raw_with_parse"}.get(
            name, "websockets_asyncio_peer"
        )
        _common.emit(
            BENCH, f"{metric}_msgs_per_s", wall[name], wall["raw"], unit="msgs/s", target=target
        )
        _common.emit(
            BENCH,
            f"{metric}_msgs_per_cpu_s",
            per_cpu[name],
            per_cpu["raw"],
            unit="msgs/cpu-s",
            target=target,
        )


if __name__ == "__main__":
    main()
