"""The feed consumer against real websocket servers on loopback, with faults injected.

Every server is real: trio-websocket's (the demo `feed` worker or a scripted one), the
`websockets` library in a process of its own, and bare TCP servers that speak the protocol by
hand to misbehave in ways a library server would not (see `tests.feed_servers`). Time is real
but small (tiny backoffs and timeouts), except in the two heartbeat tests, which run on
virtual time (`clock`): there only the clock is virtual, and since every peer is in this
process the clock can only jump when no byte is on its way. No assertion is about how long
anything took in real time; every wait is bounded (`PATIENCE`).
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
import trio.testing
import trio_websocket
from structlog.typing import FilteringBoundLogger

import service
import service.workers.feed_consumer as consumer_module
from service.jobs import JobTable
from service.observability import metrics
from service.resources import Database
from service.resources.sqlite import open_sqlite
from service.resources.websocket import WebSocketConnection
from service.supervision import Supervisor
from service.testing import open_fds, provide, supervised
from service.workers.feed import FeedSettings, feed
from service.workers.feed_consumer import FeedConsumerSettings, FeedEvent, feed_consumer
from tests.conftest import Events
from tests.feed_servers import (
    RawPeer,
    bound_not_listening,
    feed_event,
    tcp_feed,
    until,
    until_closed,
    websocket_feed,
    websockets_feed,
)

#: The longest any single wait in these tests may take before the test fails.
PATIENCE = 10.0

original_handle_event = consumer_module.handle_event
original_parse = consumer_module.parse


class Handled:
    """Stands in for `handle_event`: records each event and its `trace_id`, optionally held
    at a gate or slowed down, optionally passing it on to the real business logic."""

    def __init__(self) -> None:
        self.events: list[FeedEvent] = []
        self.trace_ids: list[str] = []
        self.gate: trio.Event | None = None
        self.delay = 0.0
        self.real = False
        self._waiting: list[tuple[int, trio.Event]] = []

    async def __call__(self, event: FeedEvent, *, db: Database, log: FilteringBoundLogger) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await trio.sleep(self.delay)
        if self.real:
            await original_handle_event(event, db=db, log=log)
        self.events.append(event)
        self.trace_ids.append(structlog.contextvars.get_contextvars()["trace_id"])
        for count, reached in self._waiting:
            if len(self.events) >= count:
                reached.set()

    @property
    def seqs(self) -> list[int]:
        return sorted(event.seq for event in self.events)

    async def wait_for(self, count: int, patience: float = PATIENCE) -> None:
        """Until `count` events have been handled (no polling: fine on virtual time too)."""
        if len(self.events) < count:
            reached = trio.Event()
            self._waiting.append((count, reached))
            with trio.fail_after(patience):
                await reached.wait()


@pytest.fixture
def handled(monkeypatch: pytest.MonkeyPatch) -> Handled:
    recorder = Handled()
    monkeypatch.setattr(consumer_module, "handle_event", recorder)
    return recorder


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """For the tests on virtual time (pytest-trio runs a test on a clock it is passed)."""
    return trio.testing.MockClock(autojump_threshold=0.01)


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    async with open_sqlite("sqlite:///:memory:") as database:
        yield database


def settings(url: str, **overrides: Any) -> dict[str, FeedConsumerSettings]:
    values: dict[str, Any] = {
        "url": url,
        "heartbeat_seconds": 30.0,
        "connect_timeout": 5.0,
        "reconnect_initial": 0.01,
        "reconnect_cap": 0.05,
        "bad_message_log_period": 0.0,
    }
    return {"feed_consumer": FeedConsumerSettings(**(values | overrides))}


@asynccontextmanager
async def consumer(db: Database, url: str, **overrides: Any) -> AsyncIterator[Supervisor]:
    """The real worker under a real supervisor; leaving the block is the soft stop."""
    async with supervised(
        feed_consumer, settings=settings(url, **overrides), resources=[provide(service.db, db)]
    ) as supervisor:
        with trio.fail_after(PATIENCE):
            await supervisor.ready.wait()
        yield supervisor


async def wait_for(events: Events, event: str, count: int = 1, **fields: Any) -> list[Any]:
    """Poll the captured log until `count` lines of `event` (with `fields`) are there."""
    await until(lambda: len(events.named(event, **fields)) >= count, PATIENCE)
    return events.named(event, **fields)


def consumer_exit(events: Events) -> str:
    [exited] = events.named("worker.exited", worker="feed_consumer")
    return str(exited["outcome"])


def count_tasks() -> int:
    """Every live Trio task, walking the tree from the root."""
    count, stack = 0, [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


class PingCounter:
    """Counts the heartbeat's pings, per connection."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.by_connection: dict[int, int] = {}
        self.order: list[int] = []
        ping = WebSocketConnection.ping

        async def counting(connection: WebSocketConnection, payload: bytes | None = None) -> None:
            key = id(connection)
            if key not in self.by_connection:
                self.order.append(key)
                self.by_connection[key] = 0
            self.by_connection[key] += 1
            await ping(connection, payload)

        monkeypatch.setattr(WebSocketConnection, "ping", counting)

    def per_connection(self) -> list[int]:
        return [self.by_connection[key] for key in self.order]


# --- happy paths ----------------------------------------------------------------------------


async def test_consumes_the_demo_feed_orders_become_jobs_each_message_its_own_trace(
    db: Database, handled: Handled, events: Events
) -> None:
    handled.real = True
    feed_settings = {"feed": FeedSettings(port=0, interval=0.005)}
    async with supervised(feed, settings=feed_settings) as feed_supervisor:
        with trio.fail_after(PATIENCE):
            await feed_supervisor.ready.wait()
        [listening] = events.named("feed.listening")
        url = f"ws://127.0.0.1:{listening['port']}/events"
        async with consumer(db, url) as supervisor:
            await wait_for(events, "feed.order", 4)
            assert supervisor.not_ready_reasons() == []
    [connected] = events.named("feed.connected")
    assert connected["url"] == url
    assert connected["worker"] == "feed_consumer"
    [disconnected] = events.named("feed.disconnected")
    assert disconnected["reason"] == "service stopping"
    assert consumer_exit(events) == "stopped"

    # Every message was a unit of work of its own, and said so in its log lines.
    assert len(handled.events) >= 4
    assert len(set(handled.trace_ids)) == len(handled.trace_ids)
    orders = events.named("feed.order")
    assert all(line["trace_id"] for line in orders)
    assert len({line["trace_id"] for line in orders}) == len(orders)
    # The demo feed stamps orders with a trace_id: the consumer carries it on, into the job.
    for event, trace_id in zip(handled.events, handled.trace_ids, strict=True):
        if event.trace_id is not None:
            assert trace_id == event.trace_id
    jobs = await db.transaction(
        lambda c: c.execute("SELECT id, trace_id, payload FROM jobs").fetchall()
    )
    assert {(line["job_id"], line["trace_id"]) for line in orders} == {
        (job_id, trace_id) for job_id, trace_id, _ in jobs
    }
    assert all(json.loads(payload)["type"] == "place_order" for *_, payload in jobs)


async def test_is_ready_only_once_connected(db: Database, handled: Handled, events: Events) -> None:
    accept = trio.Event()

    async def publish(connection: trio_websocket.WebSocketConnection, number: int) -> None:
        await connection.send_message(feed_event(0))
        await until_closed(connection)

    async with (
        websocket_feed(publish, accept_gate=accept) as server,
        consumer(db, server.url) as supervisor,
    ):
        # Started (the worker reported started) but not connected: not ready, and says why.
        await trio.sleep(0.05)
        assert supervisor.not_ready_reasons() == [
            f"worker feed_consumer: connecting to {server.url}"
        ]
        assert events.named("feed.connected") == []
        accept.set()
        await wait_for(events, "feed.connected")
        assert supervisor.not_ready_reasons() == []
        await handled.wait_for(1)
    assert server.close_codes() == [1000]


async def test_consumes_a_feed_served_by_the_websockets_library(
    db: Database, handled: Handled, events: Events, tmp_path: Path
) -> None:
    handled.real = True
    async with websockets_feed(tmp_path, count=20) as server:
        async with consumer(db, server.url) as supervisor:
            await handled.wait_for(20)
            assert supervisor.not_ready_reasons() == []
        with trio.fail_after(PATIENCE):
            closed = await server.wait_line("closed")
    assert closed == "closed 1000"  # the other library saw a normal closure
    assert handled.seqs == list(range(20))
    assert len(set(handled.trace_ids)) == 20
    [connected] = events.named("feed.connected")
    assert connected["url"] == server.url
    orders = events.named("feed.order")
    assert len(orders) == 4
    stats = await JobTable(db).stats()
    assert stats["pending"] == 4
    assert events.named("feed.bad_message") == []
    assert consumer_exit(events) == "stopped"


# --- the server ends the connection ---------------------------------------------------------


async def test_a_close_with_an_error_code_is_reported_and_followed_by_a_reconnect(
    db: Database, handled: Handled, events: Events
) -> None:
    async def publish(connection: trio_websocket.WebSocketConnection, number: int) -> None:
        if number == 1:
            await connection.send_message(feed_event(0))
            await connection.send_message(feed_event(1))
            await connection.aclose(code=1011, reason="upstream broke")
        else:
            await connection.send_message(feed_event(2))
            await until_closed(connection)

    async with websocket_feed(publish) as server, consumer(db, server.url):
        await wait_for(events, "feed.connected", 2)
        await handled.wait_for(3)
    first = events.named("feed.disconnected")[0]
    assert "1011" in first["reason"]
    assert "upstream broke" in first["reason"]
    assert first["url"] == server.url
    assert handled.seqs == [0, 1, 2]  # what was sent before the close was not lost
    assert server.close_codes() == [1011, 1000]
    assert consumer_exit(events) == "stopped"


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
async def test_an_abrupt_tcp_drop_is_noticed_and_followed_by_a_reconnect(
    reset: bool, db: Database, handled: Handled, events: Events
) -> None:
    drop = trio.Event()
    closes: list[int | None] = []

    async def serve(stream: trio.SocketStream, number: int) -> None:
        peer = RawPeer(stream)
        await peer.handshake()
        await peer.send(feed_event(number))
        if number == 1:
            await drop.wait()
            await peer.drop(reset=reset)  # no close frame
        else:
            closes.append(await peer.until_closed())

    async with tcp_feed(serve) as server, consumer(db, server.url):
        await handled.wait_for(1)
        drop.set()
        await wait_for(events, "feed.connected", 2)
        await handled.wait_for(2)
    first = events.named("feed.disconnected")[0]
    assert "1006" in first["reason"]  # abnormal closure: no close frame
    assert handled.seqs == [1, 2]
    assert closes == [1000]
    assert consumer_exit(events) == "stopped"
    # The fd of the dropped connection is closed: the leak check of every test says so.


async def test_refused_connections_are_retried_with_backoff_until_the_server_listens(
    db: Database, handled: Handled, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(random.Random, "uniform", lambda self, low, high: high)
    release = trio.Event()

    async def publish(connection: trio_websocket.WebSocketConnection, number: int) -> None:
        await connection.send_message(feed_event(number))
        if number == 1:
            await release.wait()
            await connection.aclose(code=1011, reason="going down")
        else:
            await until_closed(connection)

    with bound_not_listening() as sock:
        port = sock.getsockname()[1]
        url = f"ws://127.0.0.1:{port}/events"
        overrides = {"reconnect_initial": 0.01, "reconnect_cap": 0.04, "stable_seconds": 0.5}
        async with consumer(db, url, **overrides) as supervisor:
            not_ready = []
            for count in range(1, 6):
                await wait_for(events, "feed.disconnected", count)
                not_ready.append(supervisor.not_ready_reasons())
            sock.listen()
            listener = trio.SocketListener(sock)
            async with websocket_feed(publish, listener=listener) as server:
                await wait_for(events, "feed.connected")
                assert supervisor.not_ready_reasons() == []
                await handled.wait_for(1)
                await trio.sleep(0.6)  # longer than stable_seconds: the backoff starts over
                release.set()
                await wait_for(events, "feed.connected", 2)
                await handled.wait_for(2)
                refused = len(events.named("feed.disconnected")) - 1
                supervisor.stop()  # the consumer stops first, while the server still serves
                await wait_for(events, "worker.exited", worker="feed_consumer")
    assert all(reasons for reasons in not_ready)  # never ready while refused
    assert all("feed_consumer" in reasons[0] for reasons in not_ready)
    disconnects = events.named("feed.disconnected")
    assert all(d["reason"].startswith("connect failed") for d in disconnects[:refused])
    ceilings = [0.01, 0.02, 0.04] + [0.04] * (refused - 3)
    assert [d["retry_in_s"] for d in disconnects[:refused]] == ceilings
    after_stable = disconnects[refused]
    assert "1011" in after_stable["reason"]
    assert after_stable["retry_in_s"] == 0.01  # reset after a stable connection
    assert handled.seqs == [1, 2]
    assert server.close_codes() == [1011, 1000]


async def test_a_handshake_that_never_completes_times_out_and_is_retried(
    db: Database, handled: Handled, events: Events
) -> None:
    hung_up: list[int] = []

    async def silent(stream: trio.SocketStream, number: int) -> None:
        # Accept TCP, read the upgrade request, never answer it.
        while await stream.receive_some():
            pass
        hung_up.append(number)  # the client closed its socket

    async with tcp_feed(silent) as server:
        async with consumer(db, server.url, connect_timeout=0.2) as supervisor:
            await wait_for(events, "feed.disconnected", 2)
            reasons = supervisor.not_ready_reasons()
        await until(lambda: len(hung_up) == server.accepted)
    assert reasons
    assert "feed_consumer" in reasons[0]
    first, second = events.named("feed.disconnected")[:2]
    assert first["reason"] == "connect or handshake took over 0.2s"
    assert second["reason"] == first["reason"]
    assert events.named("feed.connected") == []
    assert server.accepted >= 2
    assert consumer_exit(events) == "stopped"


async def test_a_peer_that_stops_answering_pings_is_dropped_within_two_intervals(
    clock: trio.testing.MockClock,
    db: Database,
    handled: Handled,
    events: Events,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On virtual time (only the clock is virtual: sockets, server and consumer are real), so
    "within two intervals" is measured exactly; nothing here polls, so the clock only jumps
    when every task waits on a deadline."""
    interval = 10.0
    pings = PingCounter(monkeypatch)
    silent_since: list[float] = []
    hung_up_at: list[float] = []
    reconnected = trio.Event()
    closes: list[int | None] = []

    async def serve(stream: trio.SocketStream, number: int) -> None:
        peer = RawPeer(stream)
        await peer.handshake()
        await peer.send(feed_event(number))
        if number == 1:
            await peer.answer_pings(2)
            silent_since.append(trio.current_time())
            # Half-open, as the client sees it: TCP stays up, nothing comes back, ever.
            while await peer.next_event() is not None:
                pass
            hung_up_at.append(trio.current_time())
        else:
            reconnected.set()
            closes.append(await peer.until_closed())

    overrides = {"heartbeat_seconds": interval, "connect_timeout": 1000.0, "reconnect_initial": 0}
    async with tcp_feed(serve) as server, consumer(db, server.url, **overrides):
        with trio.fail_after(10 * interval):
            await reconnected.wait()
    first = events.named("feed.disconnected")[0]
    assert first["reason"] == "no pong within 10s"
    # The third ping went unanswered; the connection ended on it, not on a later one ...
    assert pings.per_connection()[0] == 3
    # ... two intervals after the peer went silent: one until that ping, one waiting for it.
    [silent], [hung_up] = silent_since, hung_up_at
    assert interval < hung_up - silent <= 2 * interval + 1e-6
    assert len(events.named("feed.connected")) == 2
    assert handled.seqs == [1, 2]
    assert closes == [1000]
    assert server.accepted == 2
    assert consumer_exit(events) == "stopped"


@pytest.mark.parametrize("phase", ["handshake", "backoff"])
async def test_the_soft_stop_cuts_a_connect_or_a_backoff_short(
    phase: str, db: Database, handled: Handled, events: Events
) -> None:
    hung_up = trio.Event()

    async def silent(stream: trio.SocketStream, number: int) -> None:
        while await stream.receive_some():  # never answers the upgrade
            pass
        hung_up.set()

    async with tcp_feed(silent) as server:
        if phase == "handshake":  # the first attempt would wait a minute for the answer
            async with consumer(db, server.url, connect_timeout=60.0) as supervisor:
                await until(lambda: server.accepted == 1)
                reasons = supervisor.not_ready_reasons()
            with trio.fail_after(PATIENCE):
                await hung_up.wait()  # the socket of the abandoned attempt was closed
        else:  # refused, then a minute of backoff
            with bound_not_listening() as sock:
                url = f"ws://127.0.0.1:{sock.getsockname()[1]}/events"
                overrides = {"reconnect_initial": 60.0, "reconnect_cap": 60.0}
                async with consumer(db, url, **overrides) as supervisor:
                    await wait_for(events, "feed.disconnected")
                    reasons = supervisor.not_ready_reasons()
    assert reasons
    assert "feed_consumer" in reasons[0]
    assert consumer_exit(events) == "stopped"  # within grace: not hard-cancelled
    assert events.named("feed.connected") == []
    last = events.named("feed.disconnected")[-1]["reason"]
    assert last == "service stopping" if phase == "handshake" else last.startswith("connect failed")


@pytest.mark.parametrize(
    ("garbage", "code"),
    [
        (b"\x83\x05hello", 1002),  # protocol error
        (b"this is not a websocket frame\r\n", 1002),
        # A 2**64-1 byte frame: the size limit is checked first, so "message too big".
        (b"\x81\x7f" + b"\xff" * 8, 1009),
    ],
    ids=["reserved-opcode", "plain-text", "absurd-length"],
)
async def test_garbage_frames_end_the_connection_not_the_worker(
    garbage: bytes, code: int, db: Database, handled: Handled, events: Events
) -> None:
    closes: list[int | None] = []

    async def serve(stream: trio.SocketStream, number: int) -> None:
        peer = RawPeer(stream)
        await peer.handshake()
        await peer.send(feed_event(number))
        if number == 1:
            await stream.send_all(garbage)
        closes.append(await peer.until_closed())

    async with tcp_feed(serve) as server, consumer(db, server.url):
        await wait_for(events, "feed.connected", 2)
        await handled.wait_for(2)
    [first, _] = events.named("feed.disconnected")
    assert str(code) in first["reason"]
    assert handled.seqs == [1, 2]
    # The consumer hung up on the bad peer (with or without a close frame: the RFC allows
    # either), and closed the good one normally.
    assert closes[0] in (None, code)
    assert closes[1] == 1000
    assert events.named("worker.restarting") == []
    assert consumer_exit(events) == "stopped"


# --- bad messages ---------------------------------------------------------------------------


async def test_oversize_messages_are_skipped_far_oversize_ones_close_with_1009(
    db: Database, handled: Handled, events: Events
) -> None:
    limit = 1000
    oversize = feed_event(1, note="x" * 1500)  # over the limit, under 4x: skipped
    huge = feed_event(3, note="x" * 4500)  # over 4x: the transport gives up

    async def publish(connection: trio_websocket.WebSocketConnection, number: int) -> None:
        if number == 1:
            for message in (feed_event(0), oversize, feed_event(2), huge):
                await connection.send_message(message)
        else:
            await connection.send_message(feed_event(4))
        await until_closed(connection)

    async with (
        websocket_feed(publish) as server,
        consumer(db, server.url, max_message_size=limit),
    ):
        await wait_for(events, "feed.connected", 2)
        await handled.wait_for(3)
    [bad] = events.named("feed.bad_message")
    assert bad["reason"] == f"oversize: {len(oversize)} characters, the limit is {limit}"
    assert handled.seqs == [0, 2, 4]
    assert server.close_codes() == [1009, 1000]
    assert "1009" in events.named("feed.disconnected")[0]["reason"]
    assert consumer_exit(events) == "stopped"


async def test_malformed_messages_are_logged_and_skipped_the_connection_stays(
    db: Database, handled: Handled, events: Events
) -> None:
    handled.real = True
    bad: list[str | bytes] = [
        "not json {",
        '{"type": "price"}',
        "[1, 2, 3]",
        '{"type": "order", "seq": "seven"}',
        b'{"type": "price", "seq": 9}',
    ]

    async def publish(connection: trio_websocket.WebSocketConnection, number: int) -> None:
        await connection.send_message(feed_event(0))
        for message in bad:
            await connection.send_message(message)
        await connection.send_message(feed_event(1, "order", symbol="TRIO"))
        await until_closed(connection)

    async with websocket_feed(publish) as server, consumer(db, server.url):
        await handled.wait_for(2)
    lines = events.named("feed.bad_message")
    reasons = [line["reason"] for line in lines]
    assert reasons[0].startswith("not JSON")
    assert reasons[1].startswith("wrong shape: seq")
    assert reasons[2].startswith("wrong shape")
    assert reasons[3].startswith("wrong shape: seq")
    assert reasons[4] == "binary message (27 bytes) where text is expected"
    assert len(lines) == len(bad)
    assert all(line["log_level"] == "warning" for line in lines)
    assert all(line["worker"] == "feed_consumer" for line in lines)
    assert handled.seqs == [0, 1]
    [order] = events.named("feed.order")
    assert (await JobTable(db).stats())["pending"] == 1
    assert order["seq"] == 1
    assert len(events.named("feed.connected")) == 1  # one bad message never costs the link
    assert server.close_codes() == [1000]


async def test_bad_message_lines_are_rate_limited_without_losing_the_count(
    db: Database, handled: Handled, events: Events
) -> None:
    burst, period = 200, 0.3
    second_round = trio.Event()

    async def publish(connection: trio_websocket.WebSocketConnection, number: int) -> None:
        for seq in range(burst):
            await connection.send_message(f"bad {seq}")
        await connection.send_message(feed_event(0))  # marks the end of the burst
        await second_round.wait()
        await connection.send_message("bad again")
        await connection.send_message(feed_event(1))
        await until_closed(connection)

    async with (
        websocket_feed(publish) as server,
        consumer(db, server.url, bad_message_log_period=period),
    ):
        await handled.wait_for(1)
        await trio.sleep(period + 0.1)  # the period is over: the next one is logged
        second_round.set()
        await handled.wait_for(2)
    lines = events.named("feed.bad_message")
    assert len(lines) < burst / 10  # a handful of lines, not one per message
    assert lines[0]["suppressed"] == 0
    assert lines[-1]["suppressed"] > 0
    assert lines[-1]["reason"].startswith("not JSON")
    # Every bad message is either a line or counted in a later line's `suppressed`.
    assert len(lines) + sum(line["suppressed"] for line in lines) == burst + 1
    assert server.close_codes() == [1000]


async def test_received_and_bad_messages_are_counted_in_metrics(
    db: Database, handled: Handled, events: Events
) -> None:
    def sample(name: str) -> float:
        return metrics.REGISTRY.get_sample_value(name) or 0.0

    received = sample("service_feed_messages_total")
    rejected = sample("service_feed_bad_messages_total")

    async def publish(connection: trio_websocket.WebSocketConnection, number: int) -> None:
        for message in (feed_event(0), "not json", b"binary", feed_event(1)):
            await connection.send_message(message)
        await until_closed(connection)

    async with websocket_feed(publish) as server, consumer(db, server.url):
        await handled.wait_for(2)
        connected = sample("service_feed_connected")
    bad = sample("service_feed_bad_messages_total") - rejected
    assert bad == 2, f"service_feed_bad_messages_total rose by {bad}, not by the 2 bad messages"
    messages = sample("service_feed_messages_total") - received
    assert messages in (2, 4), f"service_feed_messages_total rose by {messages}, not 2 (or 4)"
    assert connected == 1, "service_feed_connected is not 1 while connected"
    assert sample("service_feed_connected") == 0, "service_feed_connected is not 0 after"
    assert server.close_codes() == [1000]


# --- back-pressure, endurance, the soft stop ------------------------------------------------


async def test_a_slow_handler_holds_the_reading_back_without_the_heartbeat_dropping_the_link(
    clock: trio.testing.MockClock,
    db: Database,
    handled: Handled,
    events: Events,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On virtual time, so a busy machine cannot delay a pong past the heartbeat's patience:
    the clock moves only while every task waits."""
    total, handlers, queue_size, heartbeat = 120, 2, 4, 1.0
    # The handlers hold one each, the queue is full, the reader waits with one more.
    bound = handlers + queue_size + 1
    parsed: list[int] = []
    reached_bound = trio.Event()

    def counting_parse(message: str | bytes, max_size: int) -> FeedEvent:
        event = original_parse(message, max_size)
        parsed.append(event.seq)
        if len(parsed) == bound:
            reached_bound.set()
        return event

    monkeypatch.setattr(consumer_module, "parse", counting_parse)
    pings = PingCounter(monkeypatch)
    handled.gate = trio.Event()

    async def publish(connection: trio_websocket.WebSocketConnection, number: int) -> None:
        for seq in range(total):
            await connection.send_message(feed_event(seq))
        await until_closed(connection)

    overrides = {"handlers": handlers, "queue_size": queue_size, "heartbeat_seconds": heartbeat}
    async with websocket_feed(publish) as server, consumer(db, server.url, **overrides):
        with trio.fail_after(PATIENCE):
            await reached_bound.wait()
        await trio.sleep(5 * heartbeat)  # pings go out; their pongs wait behind the messages
        assert len(parsed) == bound  # back-pressure: nothing more was taken in meanwhile
        assert pings.per_connection()[0] >= 2  # a ping, a wait for its pong, a ping ...
        handled.gate.set()
        handled.delay = heartbeat / 5  # still slower than the feed: 12 heartbeats to go
        await handled.wait_for(total, patience=100 * heartbeat)
    assert [d["reason"] for d in events.named("feed.disconnected")] == ["service stopping"]
    assert len(events.named("feed.connected")) == 1
    assert handled.seqs == list(range(total))
    assert pings.per_connection()[0] >= 4
    assert server.close_codes() == [1000]


async def test_fifty_forced_reconnects_leave_no_fds_and_no_tasks_behind(
    db: Database, handled: Handled, events: Events
) -> None:
    hold = {1: trio.Event(), 51: trio.Event()}
    holding = {1: trio.Event(), 51: trio.Event()}

    async def serve(stream: trio.SocketStream, number: int) -> None:
        peer = RawPeer(stream)
        await peer.handshake()
        if number in hold:
            holding[number].set()
            await hold[number].wait()
        await peer.drop()  # right after the handshake, no close frame

    async def snapshot(number: int) -> tuple[int, int, dict[int, str]]:
        with trio.fail_after(PATIENCE):
            await holding[number].wait()
        await wait_for(events, "feed.connected", number)
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        fds = open_fds()
        return len(fds), count_tasks(), fds

    overrides = {"reconnect_initial": 0.001, "reconnect_cap": 0.002}
    async with tcp_feed(serve) as server, consumer(db, server.url, **overrides):
        fds_first, tasks_first, first = await snapshot(1)
        hold[1].set()
        fds_last, tasks_last, last = await snapshot(51)
        hold[51].set()
    assert server.accepted >= 51
    assert len(events.named("feed.disconnected")) >= 51
    assert tasks_last == tasks_first
    assert fds_last == fds_first, {
        "opened": sorted(set(last.items()) - set(first.items())),
        "closed": sorted(set(first.items()) - set(last.items())),
    }
    assert consumer_exit(events) == "stopped"


async def test_the_soft_stop_closes_with_1000_and_handles_what_was_queued(
    db: Database, handled: Handled, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    handlers, queue_size = 2, 8
    parsed: list[int] = []
    queue_full = trio.Event()

    def counting_parse(message: str | bytes, max_size: int) -> FeedEvent:
        event = original_parse(message, max_size)
        parsed.append(event.seq)
        if len(parsed) == handlers + queue_size + 1:
            queue_full.set()
        return event

    monkeypatch.setattr(consumer_module, "parse", counting_parse)
    handled.gate = trio.Event()

    async def publish(connection: trio_websocket.WebSocketConnection, number: int) -> None:
        seq = 0
        while True:  # a stream that does not end on its own
            await connection.send_message(feed_event(seq))
            seq += 1
            await trio.lowlevel.checkpoint()

    async with (
        websocket_feed(publish) as server,
        consumer(db, server.url, handlers=handlers, queue_size=queue_size) as supervisor,
    ):
        with trio.fail_after(PATIENCE):
            await queue_full.wait()
        supervisor.stop()  # mid-stream, with messages queued and the handlers busy
        await wait_for(events, "feed.disconnected")
        handled.delay = 0.01  # each queued message still takes a while
        handled.gate.set()
    assert consumer_exit(events) == "stopped"  # within grace, not hard-cancelled
    assert server.close_codes() == [1000]
    [disconnected] = events.named("feed.disconnected")
    assert disconnected["reason"] == "service stopping"
    # All that was queued was handled; at most the one the reader was holding is not.
    assert set(parsed[:-1]) <= set(handled.seqs) <= set(parsed)
    assert len(handled.seqs) >= handlers + queue_size
