"""The feed consumer against what a user would pick instead (CONTRACTS.md section 9).

One server process pushes N feed events of exactly 100 bytes of JSON per connection, as fast
as the connection takes them: the `websockets` library on asyncio does the handshake, then the
frames, serialised before the first connection, go to its transport in one write, so the
server costs next to nothing per message and the client, not the server, sets the pace. Every client
below connects to that same process, one after the other, alternating which goes first over
the rounds; each is timed from its first message to its N-th; medians are reported, in msgs
per wall second and per CPU second of this process (the steadier ratio on a shared machine).

- baseline, the peer: the `websockets` client on asyncio, `recv()` + `json.loads` per message;
- `sansio`: our connection (`service.resources.websocket`), `get_messages()` (every message
  one read holds) + `json.loads` per message; `sansio_one`: the same, `get_message()` each;
- `trio_websocket`: the other peer, raw trio-websocket, `get_message()` + `json.loads`;
- `consumer`: the real `feed_consumer` worker under the real supervisor, default settings, the
  JSON log pipeline writing to /dev/null, `handle_event` replaced by one that only counts:
  each message validated (`FeedEvent`), queued, taken by a handler, in its unit of work.

Where the consumer's time goes, per message (microseconds of CPU): the transport (the
`sansio` loop's cost less its `json.loads`), validation (`parse`), the unit of work (a trace
id bound and unbound), and the rest (the hand-off to a handler, `handle_event` through the
outage guard, metrics, scheduling), from the medians above and in-process timings.

Then memory, as `feed_memory.py` measures it: RSS growth while the handler is 10x slower
than the feed (10 s quick, 60 s full).

Targets: sansio >= 1.0x the peer; consumer >= 0.8x the peer; growth < 5 MB.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import timeit
from collections.abc import Callable

import _common
import feed_memory
import trio
import trio_websocket
from feed_throughput import Counter, Stopwatch
from websockets.asyncio.client import connect as websockets_connect

import service
import service.workers.feed_consumer as consumer_module
from service import logs, unit_of_work
from service.resources.sqlite import open_sqlite
from service.resources.websocket import connect_websocket
from service.testing import provide, supervised
from service.workers.feed_consumer import FeedConsumerSettings, feed_consumer

BENCH = "feed_peers"
MESSAGE_SIZE = 100

SERVER = """
    import asyncio
    import json
    import sys

    from websockets.asyncio.server import serve

    COUNT, SIZE = int(sys.argv[1]), int(sys.argv[2])


    def frame(seq):
        head = {"type": "price", "seq": seq, "data": {"symbol": "TRIO", "pad": ""}}
        text = json.dumps(head, separators=(",", ":"))
        head["data"]["pad"] = "x" * (SIZE - len(text))
        data = json.dumps(head, separators=(",", ":")).encode()
        assert len(data) == SIZE < 126, data
        return bytes([0x81, SIZE]) + data  # a final text frame, unmasked (server to client)


    FRAMES = b"".join(frame(seq) for seq in range(COUNT))


    async def blast(connection):
        # The handshake is done; text frames carry no state in the protocol, so the bytes
        # can go to the transport directly (it buffers them), and the close handshake still
        # works after them.
        connection.transport.write(FRAMES)
        await connection.wait_closed()


    async def main():
        async with serve(blast, "127.0.0.1", 0, compression=None) as server:
            print(server.sockets[0].getsockname()[1], flush=True)
            await server.serve_forever()


    asyncio.run(main())
"""


async def consumer(url: str, n: int) -> tuple[float, float]:
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


async def sansio(url: str, n: int) -> tuple[float, float]:
    watch = Stopwatch(n)
    loads = json.loads
    async with connect_websocket(url, connect_timeout=10, max_message_size=65_536) as ws:
        while watch.count < n:
            messages = await ws.get_messages(limit=n - watch.count)
            for message in messages:
                loads(message)
            watch.tick(len(messages))
    return watch.rates()


async def sansio_one(url: str, n: int) -> tuple[float, float]:
    watch = Stopwatch(n)
    loads = json.loads
    async with connect_websocket(url, connect_timeout=10, max_message_size=65_536) as ws:
        for _ in range(n):
            loads(await ws.get_message())
            watch.tick()
    return watch.rates()


async def raw_trio_websocket(url: str, n: int) -> tuple[float, float]:
    watch = Stopwatch(n)
    loads = json.loads
    async with trio_websocket.open_websocket_url(url) as ws:
        for _ in range(n):
            loads(await ws.get_message())
            watch.tick()
    return watch.rates()


async def websockets_asyncio(url: str, n: int) -> tuple[float, float]:
    watch = Stopwatch(n)
    loads = json.loads
    async with websockets_connect(url, compression=None, max_queue=None) as ws:
        for _ in range(n):
            loads(await ws.recv())
            watch.tick()
    return watch.rates()


def throughput(quick: bool) -> dict[str, float]:
    """Emit the msgs/s lines; the CPU medians, by client."""
    n, rounds = (20_000, 3) if quick else (150_000, 5)
    runs: dict[str, Callable[[str], tuple[float, float]]] = {
        "websockets": lambda url: asyncio.run(websockets_asyncio(url, n)),
        "sansio": lambda url: trio.run(sansio, url, n),
        "sansio_one": lambda url: trio.run(sansio_one, url, n),
        "trio_websocket": lambda url: trio.run(raw_trio_websocket, url, n),
        "consumer": lambda url: trio.run(consumer, url, n),
    }
    wall, per_cpu = _common.alternate_against_server(rounds, runs, SERVER, n, MESSAGE_SIZE)
    targets = {
        "sansio": "ratio >= 1.0",
        "sansio_one": "info: get_message() one at a time",
        "trio_websocket": "info: the other peer",
        "consumer": "ratio >= 0.8 (moonshot 1.0)",
    }
    for name, target in targets.items():
        for metric, rates, unit in (
            ("msgs_per_s", wall, "msgs/s"),
            ("msgs_per_cpu_s", per_cpu, "msgs/cpu-s"),
        ):
            _common.emit(
                BENCH,
                f"{name}_{metric}",
                rates[name],
                rates["websockets"],
                unit=unit,
                target=target,
            )
    return per_cpu


def per_message_us(statement: Callable[[], object]) -> float:
    """CPU microseconds of one call, the best of five runs."""
    runs = [timeit.Timer(statement, timer=time.process_time).timeit(20_000) for _ in range(5)]
    return min(runs) / 20_000 * 1e6


def breakdown(per_cpu: dict[str, float]) -> None:
    message = json.dumps(
        {"type": "price", "seq": 1, "data": {"symbol": "TRIO", "pad": "x" * 46}},
        separators=(",", ":"),
    )

    def unit() -> None:
        with unit_of_work():
            pass

    consumer_us = 1e6 / per_cpu["consumer"]
    parts = {
        "transport": 1e6 / per_cpu["sansio"] - per_message_us(lambda: json.loads(message)),
        "validation": per_message_us(lambda: consumer_module.parse(message, 65_536)),
        "unit_of_work": per_message_us(unit),
    }
    parts["rest"] = consumer_us - sum(parts.values())
    peer_us = 1e6 / per_cpu["websockets"]
    for part, us in (("consumer", consumer_us), *parts.items()):
        what = "the whole worker" if part == "consumer" else "part of the consumer's"
        _common.emit(
            BENCH,
            f"{part}_us_per_msg",
            us,
            peer_us,
            unit="us/msg (CPU)",
            target=f"info: {what}; baseline: the peer's whole cost",
        )


def main() -> None:
    args = _common.parse_args(__doc__)
    logs.configure(log_format="json", stream=open(os.devnull, "w"))  # noqa: SIM115
    breakdown(throughput(args.quick))
    slow, fast = feed_memory.run(args.quick)
    _common.emit(
        BENCH,
        "rss_growth_slow_handler",
        slow["growth"],
        fast["growth"],
        unit="MB",
        target="growth < 5 MB",
    )


if __name__ == "__main__":
    main()
