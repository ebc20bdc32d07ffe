"""Feed consumer memory under a handler 10x slower than the feed: it must stay flat.

A `websockets` server (asyncio, its own process) sends R valid feed events a second (100
bytes of JSON each) on every connection, on an absolute schedule: when the client holds back
it falls behind and then sends as fast as the connection lets it. Two fresh interpreters run
the real `feed_consumer` worker under the real supervisor (default settings: 4 handlers, a
queue of 64) side by side against that server, logs in JSON to /dev/null:

- candidate: `handle_event` takes 10/R seconds a message (`trio.sleep`), ten times the feed's
  interval, so the reading is held back the whole time (back-pressure);
- baseline: the same run with a handler that returns at once and keeps up with the feed.

Each warms up (quick: 3 s, full: 10 s), then reads its RSS after a full garbage collection
(the steady state), samples it every second for the run (quick: 10 s, full: 60 s), and reads
it again at the end. Reported: growth from the steady state to the end, and to the highest
sample; and how many messages each handled, to show the slow one really was held back.
Target: growth < 5 MB with the slow handler.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import _common
import trio

import service
import service.workers.feed_consumer as consumer_module
from service import logs
from service.resources.sqlite import open_sqlite
from service.testing import provide, supervised
from service.workers.feed_consumer import FeedConsumerSettings, feed_consumer

BENCH = "feed_memory"
RATE = 1000  # messages a second, per connection
MB = 1024 * 1024

SERVER = """
    import asyncio
    import json
    import sys

    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    RATE = int(sys.argv[1])


    def message(seq):
        text = json.dumps({"type": "price", "seq": seq, "data": {"pad": ""}})
        return json.dumps({"type": "price", "seq": seq, "data": {"pad": "x" * (100 - len(text))}})


    async def feed(connection):
        loop = asyncio.get_running_loop()
        began, seq = loop.time(), 0
        try:
            while True:
                due = int((loop.time() - began) * RATE) + 1
                while seq < due:
                    await connection.send(message(seq))
                    seq += 1
                await asyncio.sleep(0.01)
        except ConnectionClosed:
            pass


    async def main():
        async with serve(feed, "127.0.0.1", 0, compression=None) as server:
            print(server.sockets[0].getsockname()[1], flush=True)
            await server.serve_forever()


    asyncio.run(main())
"""


async def measure(
    url: str, handler_seconds: float, warmup: float, seconds: float
) -> dict[str, Any]:
    handled = 0

    async def handle_event(event: Any, **_: Any) -> None:
        nonlocal handled
        if handler_seconds:
            await trio.sleep(handler_seconds)
        handled += 1

    consumer_module.handle_event = handle_event  # type: ignore[assignment]
    settings = {"feed_consumer": FeedConsumerSettings(url=url)}
    async with (
        open_sqlite("sqlite:///:memory:") as db,
        supervised(
            feed_consumer, settings=settings, resources=[provide(service.db, db)]
        ) as supervisor,
    ):
        await trio.sleep(warmup)
        if supervisor.not_ready_reasons():
            raise RuntimeError(f"not connected: {supervisor.not_ready_reasons()}")
        steady, handled_before = _common.rss_bytes(), handled
        peak = steady
        for _ in range(int(seconds)):
            await trio.sleep(1)
            peak = max(peak, _common.rss_bytes())
        end = _common.rss_bytes()
        return {
            "growth": (end - steady) / MB,
            "peak_growth": (peak - steady) / MB,
            "steady": steady / MB,
            "handled": handled - handled_before,
        }


def child(url: str, handler_seconds: float, warmup: float, seconds: float) -> None:
    logs.configure(log_format="json", stream=open(os.devnull, "w"))  # noqa: SIM115
    result = trio.run(measure, url, handler_seconds, warmup, seconds)
    print(json.dumps(result))


def run(quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(slow handler, fast handler) results, measured side by side."""
    warmup, seconds = durations(quick)
    slow = 10 / RATE  # ten times the feed's interval
    with tempfile.TemporaryDirectory() as tmp:
        server, url = _common.start_websocket_server(Path(tmp), "rate_server", SERVER, RATE)
        try:
            children = {
                name: subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        url,
                        str(delay),
                        str(warmup),
                        str(seconds),
                    ],
                    cwd=_common.ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for name, delay in (("slow", slow), ("fast", 0.0))
            }
            results = {}
            for name, process in children.items():
                out, err = process.communicate(timeout=warmup + seconds + 120)
                if process.returncode != 0:
                    raise RuntimeError(f"{name} child failed:\n{out}{err}")
                results[name] = json.loads(out.splitlines()[-1])
        finally:
            server.terminate()
            server.communicate(timeout=10)
    return results["slow"], results["fast"]


def durations(quick: bool) -> tuple[float, float]:
    """(warm-up, measured) seconds."""
    return (3.0, 10.0) if quick else (10.0, 60.0)


def main() -> None:
    args = _common.parse_args(__doc__)
    _, seconds = durations(args.quick)
    slow_run, fast_run = run(args.quick)
    target = "growth < 5 MB"
    _common.emit(
        BENCH,
        "rss_growth_slow_handler",
        slow_run["growth"],
        fast_run["growth"],
        unit="MB",
        target=target,
    )
    _common.emit(
        BENCH,
        "rss_peak_growth_slow_handler",
        slow_run["peak_growth"],
        fast_run["peak_growth"],
        unit="MB",
        target=target,
    )
    _common.emit(
        BENCH,
        "messages_handled",
        slow_run["handled"],
        fast_run["handled"],
        unit="messages",
        target=f"info: in {seconds:g} s; the feed sends {RATE}/s",
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
    else:
        main()
