"""The Sans-I/O websocket client connection, against a server written by hand (wsproto) on
loopback, so each test controls exactly which bytes arrive, and when."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from wsproto.events import CloseConnection, Ping, Pong, TextMessage

from service.resources.websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    connect_websocket,
)
from tests.websocket_peers import HOST, RawPeer, TcpFeed, tcp_feed, until

PATIENCE = 10.0


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """For the tests on virtual time (pytest-trio runs a test on a clock it is passed)."""
    return trio.testing.MockClock(autojump_threshold=0.01)


Serve = Callable[[RawPeer], Awaitable[None]]


@asynccontextmanager
async def server(serve: Serve) -> AsyncIterator[TcpFeed]:
    """A server that shakes hands, then runs `serve(peer)` on each connection."""

    async def handler(stream: trio.SocketStream, number: int) -> None:
        peer = RawPeer(stream)
        await peer.handshake()
        await serve(peer)

    async with tcp_feed(handler) as feed:
        yield feed


def connect(
    feed: TcpFeed, max_message_size: int = 65_536
) -> AsyncContextManager[WebSocketConnection]:
    return connect_websocket(feed.url, connect_timeout=PATIENCE, max_message_size=max_message_size)


@asynccontextmanager
async def connected(serve: Serve) -> AsyncIterator[tuple[WebSocketConnection, TcpFeed]]:
    """A client connection to `server(serve)`."""
    async with server(serve) as feed, connect(feed) as connection:  # within connect_timeout
        yield connection, feed


def frame(text: str) -> bytes:
    """One unmasked text frame, as a server sends it (payload under 126 bytes)."""
    data = text.encode()
    assert len(data) < 126
    return bytes([0x81, len(data)]) + data


async def test_split_and_fragmented_messages_come_out_whole_text_as_str_binary_as_bytes() -> None:
    async def serve(peer: RawPeer) -> None:
        for byte in frame("split"):  # one byte per TCP write
            await peer.stream.send_all(bytes([byte]))
            await trio.sleep(0.001)
        await peer.stream.send_all(peer.ws.send(TextMessage("frag", message_finished=False)))
        await peer.stream.send_all(peer.ws.send(TextMessage("mented")))
        await peer.send(b"\x00binary")
        await peer.until_closed()

    async with connected(serve) as (connection, _):
        assert await connection.get_message() == "split"
        assert await connection.get_message() == "fragmented"
        assert await connection.get_message() == b"\x00binary"


async def test_many_frames_in_one_read_come_out_in_one_batch_or_in_limited_ones() -> None:
    sent = trio.Event()

    async def serve(peer: RawPeer) -> None:
        await peer.stream.send_all(b"".join(frame(f"m{n}") for n in range(100)))
        sent.set()
        await peer.until_closed()

    async with connected(serve) as (connection, _):
        await sent.wait()
        first = await connection.get_messages(limit=3)
        rest = await connection.get_messages()
        assert first == ["m0", "m1", "m2"]
        assert rest == [f"m{n}" for n in range(3, 100)]  # parsed from one read, one call


async def test_ping_from_the_peer_is_answered_and_our_ping_waits_for_its_pong() -> None:
    pongs: list[bytes] = []

    async def serve(peer: RawPeer) -> None:
        await peer.stream.send_all(peer.ws.send(Ping(b"hello")))
        event = await peer.next_event()
        assert isinstance(event, Pong)
        pongs.append(bytes(event.payload))
        await peer.send("after the pong")
        await peer.until_closed()  # answers our pings too

    async with connected(serve) as (connection, _):
        assert await connection.get_message() == "after the pong"
        assert pongs == [b"hello"]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection.get_message)  # a reader sees the pong
            with trio.fail_after(PATIENCE):
                await connection.ping(b"ours")
            nursery.cancel_scope.cancel(reason="the pong came")


async def test_a_ping_nobody_reads_the_pong_of_waits_and_can_be_given_up_on(
    clock: trio.testing.MockClock,
) -> None:
    """On virtual time: the clock jumps only while no byte is on its way (all in-process)."""

    async def serve(peer: RawPeer) -> None:
        await peer.until_closed()

    async with connected(serve) as (connection, _):
        with trio.move_on_after(60) as waiting:
            await connection.ping(b"again")
        assert waiting.cancelled_caught  # back-pressure holds pongs back, by design
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection.get_message)
            with trio.fail_after(PATIENCE):
                await connection.ping(b"again")  # the payload given up on is free again
            nursery.cancel_scope.cancel(reason="the pong came")


async def test_a_ping_waiting_when_the_peer_closes_raises_connection_closed() -> None:
    async def serve(peer: RawPeer) -> None:
        event = await peer.next_event()
        assert isinstance(event, Ping)
        await peer.stream.send_all(peer.ws.send(CloseConnection(1001, "going away")))
        await peer.until_closed()

    async def read(connection: WebSocketConnection) -> None:
        with suppress(ConnectionClosed):  # the reader sees the close first
            await connection.get_messages()

    async with connected(serve) as (connection, _), trio.open_nursery() as nursery:
        nursery.start_soon(read, connection)
        with pytest.raises(ConnectionClosed) as closed, trio.fail_after(PATIENCE):
            await connection.ping()
    assert closed.value.code == 1001


async def test_leaving_the_block_closes_with_1000_and_waits_for_the_peers_close() -> None:
    closes: list[int | None] = []

    async def serve(peer: RawPeer) -> None:
        await peer.send("one")
        closes.append(await peer.until_closed())

    async with connected(serve) as (connection, server):
        assert await connection.get_message() == "one"
    assert isinstance(connection.closed, ConnectionClosed)
    assert connection.closed.code == 1000
    assert connection.closed.by_peer  # the peer's answer completed the handshake
    assert closes == [1000]
    assert server.accepted == 1


async def test_a_close_from_the_peer_is_echoed_and_raised_after_the_messages_before_it() -> None:
    echoed: list[int | None] = []

    async def serve(peer: RawPeer) -> None:
        await peer.send("last words")
        await peer.stream.send_all(peer.ws.send(CloseConnection(1011, "upstream broke")))
        event = await peer.next_event()
        echoed.append(event.code if isinstance(event, CloseConnection) else None)

    async with connected(serve) as (connection, _):
        assert await connection.get_messages() == ["last words"]
        with pytest.raises(ConnectionClosed) as closed:
            await connection.get_message()
    assert (closed.value.code, closed.value.reason, closed.value.by_peer) == (
        1011,
        "upstream broke",
        True,
    )
    assert str(closed.value) == "closed by peer: 1011 (INTERNAL_ERROR): upstream broke"
    assert echoed == [1011]
    with pytest.raises(ConnectionClosed):  # and stays closed
        await connection.send_message("too late")


async def test_an_oversize_message_fails_the_connection_with_1009() -> None:
    closes: list[int | None] = []

    async def serve(peer: RawPeer) -> None:
        await peer.send("x" * 200)
        closes.append(await peer.until_closed())

    async with server(serve) as feed, connect(feed, max_message_size=100) as connection:
        with pytest.raises(ConnectionClosed) as closed:
            await connection.get_message()
    assert closed.value.code == 1009
    assert not closed.value.by_peer
    assert closes == [1009]


async def test_invalid_utf8_fails_the_connection_with_1007() -> None:
    closes: list[int | None] = []

    async def serve(peer: RawPeer) -> None:
        await peer.stream.send_all(bytes([0x81, 2]) + b"\xc3\x28")
        closes.append(await peer.until_closed())

    async with connected(serve) as (connection, _):
        with pytest.raises(ConnectionClosed) as closed:
            await connection.get_message()
    assert closed.value.code == 1007
    assert closes == [1007]


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
async def test_tcp_dropped_without_a_close_frame_is_1006(reset: bool) -> None:
    async def serve(peer: RawPeer) -> None:
        await peer.send("before")
        await peer.drop(reset=reset)

    async with connected(serve) as (connection, _):
        assert await connection.get_message() == "before"
        with pytest.raises(ConnectionClosed) as closed:
            await connection.get_message()
    assert closed.value.code == 1006
    assert str(closed.value) == "closed: 1006 (ABNORMAL_CLOSURE)"


async def test_leaving_with_an_exception_drops_tcp_without_a_close_frame() -> None:
    closes: list[int | None] = []

    async def serve(peer: RawPeer) -> None:
        closes.append(await peer.until_closed())

    async with server(serve) as feed:
        with pytest.raises(KeyError):
            async with connect(feed):
                raise KeyError("the caller failed")
        await until(lambda: bool(closes))
    assert closes == [None]


async def test_a_rejected_upgrade_says_its_http_status() -> None:
    async def handler(stream: trio.SocketStream, number: int) -> None:
        await stream.receive_some()
        await stream.send_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        await stream.receive_some()

    async with tcp_feed(handler) as server:
        with pytest.raises(ConnectionRejected) as rejected:
            async with connect_websocket(server.url, connect_timeout=PATIENCE, max_message_size=1):
                pass
    assert rejected.value.status_code == 404
    assert str(rejected.value) == "handshake rejected: HTTP 404"


# --- wss:// ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl, as no test CA package is installed)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@asynccontextmanager
async def tls_feed(cert: Path, key: Path) -> AsyncIterator[str]:
    """A wss:// server that sends one message, then answers until the client closes."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    async def handler(tcp: trio.SocketStream) -> None:
        async with tcp:
            stream = trio.SSLStream(tcp, server_context, server_side=True)
            try:
                peer = RawPeer(stream)  # type: ignore[arg-type]  # duck-typed: a Stream
                await peer.handshake()
                await peer.send("secret")
                await peer.until_closed()
            except trio.BrokenResourceError:
                pass  # the client refused our certificate

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, handler, 0, host=HOST))
        yield f"wss://{HOST}:{listener.socket.getsockname()[1]}/events"
        nursery.cancel_scope.cancel(reason="the test is over")


async def test_wss_with_a_trusted_certificate(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    trusting = ssl.create_default_context(cafile=str(cert))
    async with tls_feed(cert, key) as url:
        async with connect_websocket(
            url, connect_timeout=PATIENCE, max_message_size=1000, ssl_context=trusting
        ) as connection:
            assert await connection.get_message() == "secret"
        assert connection.closed is not None
        assert connection.closed.code == 1000


async def test_wss_refuses_a_certificate_it_does_not_trust(certificate: tuple[Path, Path]) -> None:
    async with tls_feed(*certificate) as url:
        with pytest.raises(ssl.SSLCertVerificationError):  # an OSError: "connect failed"
            async with connect_websocket(url, connect_timeout=PATIENCE, max_message_size=1000):
                pass
