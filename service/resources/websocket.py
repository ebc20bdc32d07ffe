"""A websocket client connection on Trio streams, driven by the `websockets` Sans-I/O protocol.

The protocol layer (`websockets.client.ClientProtocol`) turns bytes into frames and frames
into bytes, with C-accelerated unmasking; this module only moves the bytes. One large read
becomes as many messages as it holds, and a reader can take them all in one call
(`get_messages`), so the per-message cost is the protocol's parsing and little else: no
reader task, no channel per message.

The connection owns its TCP stream (`connect_websocket`): every way out of the block closes
the socket, including a peer that dropped TCP without a close handshake.
"""

from __future__ import annotations

import os
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from urllib.parse import urlsplit

import trio
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidState, InvalidStatus
from websockets.frames import BINARY, CONT, PONG, TEXT, CloseCode, Frame
from websockets.protocol import CLOSED, OPEN
from websockets.uri import parse_uri

#: How long the close handshake may take when we leave a connection that is still healthy.
CLOSE_TIMEOUT = 2.0
#: Bytes asked of the stream per read: a read parses into every frame it holds.
RECEIVE_SIZE = 65_536

Stream = trio.SocketStream | trio.SSLStream[trio.SocketStream]


class WebSocketURLError(ValueError):
    """Not a ws:// or wss:// URL."""


class HandshakeError(Exception):
    """The server did not complete the websocket upgrade."""


class ConnectionRejected(HandshakeError):
    """The server answered the upgrade with an HTTP status other than 101."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"handshake rejected: HTTP {status_code}")
        self.status_code = status_code


class ConnectionClosed(Exception):
    """The connection is closed: `code` and `reason` of the close frame received (or sent,
    when we closed first on an error of the peer's); 1006 when TCP ended without one."""

    def __init__(self, code: int, reason: str, *, by_peer: bool) -> None:
        self.code = code
        self.reason = reason
        self.by_peer = by_peer
        try:
            self.name = CloseCode(code).name
        except ValueError:
            self.name = "UNKNOWN"
        text = (
            f"closed by peer: {code} ({self.name})" if by_peer else f"closed: {code} ({self.name})"
        )
        super().__init__(f"{text}: {reason}" if reason else text)


def split_url(url: str) -> tuple[bool, str, int, str]:
    """(secure, host, port, resource) of a ws:// or wss:// URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise WebSocketURLError(f"{url!r} is not a ws:// or wss:// URL")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return secure, parts.hostname, port, resource


class WebSocketConnection:
    """One open client connection. Not for use by two readers at once; sending (messages,
    pings) is safe from any task.

    Pings from the peer are answered, and pongs to our pings noticed, while a task is reading:
    a connection nobody reads answers nothing, which is what back-pressure means.
    """

    def __init__(self, stream: Stream, protocol: ClientProtocol) -> None:
        self._stream = stream
        self._protocol = protocol
        self._messages: deque[str | bytes] = deque()
        self._fragments: list[bytes] = []  # a fragmented message, until its last frame
        self._fragmented_text = False
        self._pongs: dict[bytes, trio.Event] = {}  # the pings sent, waiting for their pong
        self._send_lock = trio.StrictFIFOLock()
        self._reading = False
        self.closed: ConnectionClosed | None = None
        """Why the connection is closed, once it is."""

    @classmethod
    async def open(cls, stream: Stream, url: str, max_message_size: int) -> WebSocketConnection:
        """The opening handshake over `stream` (already connected; TLS done for wss://)."""
        protocol = ClientProtocol(parse_uri(url), max_size=max_message_size)
        protocol.send_request(protocol.connect())
        connection = cls(stream, protocol)
        await connection._flush()
        while True:
            try:
                data = await stream.receive_some(RECEIVE_SIZE)
            except trio.BrokenResourceError:
                data = b""
            if data:
                protocol.receive_data(data)
            else:
                protocol.receive_eof()
            events = protocol.events_received()
            error = protocol.handshake_exc
            if isinstance(error, InvalidStatus):
                raise ConnectionRejected(error.response.status_code) from error
            if error is not None:
                raise HandshakeError(f"handshake failed: {error}") from error
            if events:  # the response; frames sent right behind it came in the same read
                connection._receive(events[1:])
                await connection._flush()
                return connection

    async def get_message(self) -> str | bytes:
        """The next message: `str` for a text message, `bytes` for a binary one."""
        while not self._messages:
            await self._read()
        await trio.lowlevel.checkpoint_if_cancelled()
        return self._messages.popleft()

    async def get_messages(self, limit: int | None = None) -> list[str | bytes]:
        """Every message received so far (at most `limit`, at least one), waiting for one if
        there is none: what one read brought comes out in one call.

        Messages received before the peer closed are returned before `ConnectionClosed`.
        """
        messages = self._messages
        while not messages:
            await self._read()
        await trio.lowlevel.checkpoint_if_cancelled()
        if limit is None or limit >= len(messages):
            batch = list(messages)
            messages.clear()
            return batch
        return [messages.popleft() for _ in range(max(limit, 1))]

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str | bytes]:
        """The messages until the connection closes: normally (1000/1001) ends the loop."""
        try:
            while True:
                yield await self.get_message()
        except ConnectionClosed as exc:
            if exc.code not in (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY):
                raise

    async def send_message(self, message: str | bytes) -> None:
        if isinstance(message, str):
            await self._send(lambda: self._protocol.send_text(message.encode()))
        else:
            await self._send(lambda: self._protocol.send_binary(message))

    async def ping(self, payload: bytes | None = None) -> None:
        """Send a ping and wait for its pong (seen only while some task reads)."""
        payload = os.urandom(4) if payload is None else payload
        if payload in self._pongs:
            raise ValueError(f"a ping with payload {payload!r} is already waiting for its pong")
        pong = self._pongs[payload] = trio.Event()
        try:
            await self._send(lambda: self._protocol.send_ping(payload))
            await pong.wait()
            if self.closed is not None and payload in self._pongs:
                raise self.closed
        finally:  # answered, closed, or given up on (a timeout): forget it either way
            self._pongs.pop(payload, None)

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake, and, unless another task is reading, wait for the
        peer's close frame (messages arriving meanwhile are dropped). Bound it with a timeout:
        a peer that is gone never answers."""
        if self.closed is not None:
            return
        if self._protocol.state is OPEN:
            await self._send(lambda: self._protocol.send_close(code, reason))
        if self._reading:
            return
        self._messages.clear()
        with suppress(ConnectionClosed):  # the peer's close frame (or TCP's end): done
            while True:
                await self._read()
                self._messages.clear()

    # --- the bytes in ---

    async def _read(self) -> None:
        """One read from the stream, parsed into messages; answers what the protocol answers."""
        if self.closed is not None:
            raise self.closed
        if self._reading:
            raise trio.BusyResourceError("another task is reading from this connection")
        self._reading = True
        try:
            try:
                data = await self._stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""  # reset, or a TLS stream cut short: the end of the stream
            if data:
                self._protocol.receive_data(data)
            else:
                self._protocol.receive_eof()
            self._receive(self._protocol.events_received())
            await self._flush()
        finally:
            self._reading = False
        if self.closed is not None and not self._messages:
            raise self.closed

    def _receive(self, frames: Sequence[object]) -> None:
        """Frames to messages; then whether the connection is closed."""
        append = self._messages.append
        for frame in frames:
            assert isinstance(frame, Frame)
            opcode = frame.opcode
            if opcode is TEXT and frame.fin and not self._fragments:  # the common case
                text = self._decode(frame.data)
                if text is None:
                    break
                append(text)
            elif opcode is BINARY and frame.fin and not self._fragments:
                append(bytes(frame.data))
            elif opcode is PONG:
                self._pong(bytes(frame.data))
            elif opcode in (TEXT, BINARY, CONT) and not self._fragment(frame):
                break  # invalid UTF-8: the connection failed
        self._check_closed()

    def _fragment(self, frame: Frame) -> bool:
        """A frame of a fragmented message (whether all is well)."""
        if frame.opcode is not CONT:
            self._fragmented_text = frame.opcode is TEXT
        self._fragments.append(bytes(frame.data))
        if not frame.fin:
            return True
        data = b"".join(self._fragments)
        self._fragments.clear()
        if not self._fragmented_text:
            self._messages.append(data)
            return True
        text = self._decode(data)
        if text is not None:
            self._messages.append(text)
        return text is not None

    def _decode(self, data: bytes | bytearray | memoryview) -> str | None:
        """UTF-8, or the connection fails with 1007 (invalid data)."""
        try:
            return str(data, "utf-8")
        except UnicodeDecodeError as exc:
            self._protocol.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
            return None

    def _pong(self, payload: bytes) -> None:
        """A pong answers its ping and every ping sent before it."""
        if payload not in self._pongs:
            return
        while self._pongs:
            sent, pong = next(iter(self._pongs.items()))
            del self._pongs[sent]
            pong.set()
            if sent == payload:
                return

    def _check_closed(self) -> None:
        """Closed once a close frame went either way, or TCP ended."""
        if self.closed is not None:
            return
        protocol = self._protocol
        if protocol.close_rcvd is not None:
            code, reason = protocol.close_rcvd.code, protocol.close_rcvd.reason
            closed = ConnectionClosed(code, reason, by_peer=True)
        elif protocol.close_sent is not None:
            code, reason = protocol.close_sent.code, protocol.close_sent.reason
            closed = ConnectionClosed(code, reason, by_peer=False)
        elif protocol.state is CLOSED:
            closed = ConnectionClosed(CloseCode.ABNORMAL_CLOSURE, "", by_peer=False)
        else:
            return
        closed.__cause__ = protocol.parser_exc
        self.closed = closed
        for pong in self._pongs.values():
            pong.set()  # the pings fail with `closed`

    # --- the bytes out ---

    async def _send(self, produce: Callable[[], None]) -> None:
        if self.closed is not None:
            raise self.closed
        try:
            produce()
        except InvalidState:
            raise ConnectionClosed(CloseCode.ABNORMAL_CLOSURE, "closing", by_peer=False) from None
        await self._flush()

    async def _flush(self) -> None:
        writes = self._protocol.data_to_send()
        data = b"".join(writes)  # b"" among them is "half-close": closing the stream does it
        if not data:
            return
        async with self._send_lock:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.closed = self.closed or ConnectionClosed(
                    CloseCode.ABNORMAL_CLOSURE, "connection lost", by_peer=False
                )
                raise self.closed from None


@asynccontextmanager
async def connect_websocket(
    url: str,
    *,
    connect_timeout: float,
    max_message_size: int,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[WebSocketConnection]:
    """Connect (TCP, TLS for wss://, then the handshake), each step within `connect_timeout`.

    Leaving the block normally closes the websocket with 1000 (normal closure) if it is still
    open; leaving it with an exception drops the connection without a handshake, since the
    peer is probably gone. Either way the TCP stream is closed. `max_message_size` is in
    bytes: a larger message fails the connection with 1009. Raises `OSError` (refused, DNS,
    TLS certificate: `ssl.SSLError`), `trio.TooSlowError`, `HandshakeError`, and, once
    connected, `ConnectionClosed`.
    """
    secure, host, port, _ = split_url(url)
    with trio.fail_after(connect_timeout):
        tcp = await trio.open_tcp_stream(host, port)
    async with tcp:  # closes the socket on every way out; TLS on top owns no fd of its own
        with trio.fail_after(connect_timeout):
            stream: Stream = tcp
            if secure:
                stream = trio.SSLStream(
                    tcp, ssl_context or ssl.create_default_context(), server_hostname=host
                )
                await _tls_handshake(stream)
            connection = await WebSocketConnection.open(stream, url, max_message_size)
        yield connection
        with trio.move_on_after(CLOSE_TIMEOUT):
            await connection.aclose(1000, "closing")


async def _tls_handshake(stream: trio.SSLStream[trio.SocketStream]) -> None:
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        if isinstance(exc.__cause__, OSError):  # ssl.SSLError is one: say what TLS said
            raise exc.__cause__ from None
        raise OSError(f"TLS handshake failed: {exc}") from exc
