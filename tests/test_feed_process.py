"""The feed and its consumer in a real `python -m service`, stopped by SIGTERM mid-stream.

Both sides of each websocket are watched from outside the process: a client of our own on the
process's feed, or a server of our own for the process's consumer, and the process's log.
`PYTHONWARNINGS` makes every `ResourceWarning` (an unclosed socket) visible in the output.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

import trio
import trio_websocket

from service.resources.websocket import ConnectionClosed, connect_websocket
from service.testing import ServiceProcess, service_env
from tests.feed_servers import feed_event, until, websocket_feed

#: Per wait: how long the process may take to say the next thing, or the test to see it.
PATIENCE = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    return service_env(
        tmp_path,
        SERVICE_OPS_PORT="0",
        SERVICE_LOG_FORMAT="json",
        SERVICE_DB__URL=f"sqlite:///{tmp_path / 'service.db'}",
        PYTHONWARNINGS="always::ResourceWarning",
        **settings,
    )


async def wait_for_count(service: ServiceProcess, event: str, count: int = 1) -> dict[str, Any]:
    """The `count`-th line of `event`, reading on only if it is not there yet."""
    while len(service.events(event)) < count:
        await service.wait_for(event)
    return service.events(event)[count - 1]


def assert_clean_exit(service: ServiceProcess, code: int) -> None:
    output = "\n".join(service.text)
    assert code == 0, output
    assert "ResourceWarning" not in output
    assert "Traceback" not in output
    [stopped] = service.events("service.stopped")
    assert stopped["exit_code"] == 0
    outcomes = {line["worker"]: line["outcome"] for line in service.events("worker.exited")}
    assert set(outcomes.values()) == {"stopped"}, outcomes
    [disconnected] = service.events("feed.disconnected")
    assert disconnected["reason"] == "service stopping"


async def test_sigterm_mid_stream_closes_the_feed_and_the_consumer_normally(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/events"
    env = make_env(
        tmp_path,
        SERVICE_WORKERS="feed,feed_consumer",
        SERVICE_FEED__PORT=str(port),
        SERVICE_FEED__INTERVAL="0.02",
        SERVICE_FEED_CONSUMER__URL=url,
    )
    watched: dict[str, Any] = {"messages": 0, "close": None}

    async def watch(*, task_status: trio.TaskStatus[None]) -> None:
        """A client of our own on the process's feed, until the feed closes it."""
        async with connect_websocket(url, connect_timeout=5, max_message_size=65536) as ws:
            task_status.started()
            try:
                while True:
                    await ws.get_message()
                    watched["messages"] += 1
            except ConnectionClosed as exc:
                watched["close"] = exc if exc.by_peer else None  # by_peer: a close frame came

    async with ServiceProcess(env, patience=PATIENCE) as service, trio.open_nursery() as nursery:
        listening = await wait_for_count(service, "feed.listening")
        assert listening["port"] == port
        connected = await wait_for_count(service, "feed.connected")
        assert connected["url"] == url
        await wait_for_count(service, "service.ready")
        with trio.fail_after(PATIENCE):
            await nursery.start(watch)
        orders = len(service.events("feed.order"))
        await wait_for_count(service, "feed.order", orders + 3)  # mid-stream, watched
        service.send(signal.SIGTERM)
        code = await service.exit_code()
    assert_clean_exit(service, code)
    assert watched["messages"] > 0
    close = watched["close"]
    assert close is not None, "the feed dropped our connection without a close frame"
    assert close.code in (1000, 1001)  # normal closure, or going away
    # The consumer stopped first (it was started last), so it left a feed that still served.
    stops = [line["worker"] for line in service.events("worker.exited")]
    assert stops == ["feed_consumer", "feed"]


async def test_sigterm_mid_stream_closes_the_consumers_websocket_with_1000(
    tmp_path: Path,
) -> None:
    async def publish(connection: trio_websocket.WebSocketConnection, number: int) -> None:
        seq = 0
        while True:
            await connection.send_message(feed_event(seq, "order" if seq % 5 == 4 else "price"))
            seq += 1
            await trio.sleep(0.005)

    async with websocket_feed(publish) as server:
        env = make_env(
            tmp_path, SERVICE_WORKERS="feed_consumer", SERVICE_FEED_CONSUMER__URL=server.url
        )
        async with ServiceProcess(env, patience=PATIENCE) as service:
            await wait_for_count(service, "feed.connected")
            await wait_for_count(service, "feed.order", 3)  # mid-stream
            service.send(signal.SIGTERM)
            code = await service.exit_code()
        await until(lambda: 1 in server.closes)
    assert_clean_exit(service, code)
    assert server.accepted == 1
    assert server.close_codes() == [1000]
