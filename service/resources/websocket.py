"""A websocket client connection that owns its TCP stream, so every exit path closes it.

trio-websocket's own `open_websocket_url` leaves the socket open when the peer drops TCP
without a close handshake (a `ResourceWarning` later). Here the stream is opened first and
closed by its own `async with`, whatever happens to the websocket on top of it.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from urllib.parse import urlsplit

import trio
import trio_websocket

#: How long the close handshake may take when we leave a connection that is still healthy.
CLOSE_TIMEOUT = 2.0


class WebSocketURLError(ValueError):
    """Not a ws:// or wss:// URL."""


def split_url(url: str) -> tuple[bool, str, int, str]:
    """(secure, host, port, resource) of a ws:// or wss:// URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise WebSocketURLError(f"{url!r} is not a ws:// or wss:// URL")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return secure, parts.hostname, port, resource


@asynccontextmanager
async def connect_websocket(
    url: str, *, connect_timeout: float, max_message_size: int
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """Connect (TCP, TLS for wss://, then the handshake), each step within `connect_timeout`.

    Leaving the block normally closes the websocket with 1000 (normal closure) if it is still
    open; leaving it with an exception drops the connection without a handshake, since the
    peer is probably gone. Either way the TCP stream is closed.
    """
    secure, host, port, resource = split_url(url)
    with trio.fail_after(connect_timeout):
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
        if secure:
            stream = await trio.open_ssl_over_tcp_stream(
                host, port, ssl_context=ssl.create_default_context()
            )
        else:
            stream = await trio.open_tcp_stream(host, port)
    with _single_exceptions_unwrapped():
        async with stream, trio.open_nursery() as nursery:
            with trio.fail_after(connect_timeout):
                connection = await trio_websocket.wrap_client_stream(
                    nursery, stream, host, resource, max_message_size=max_message_size
                )
            try:
                yield connection
            except BaseException:
                nursery.cancel_scope.cancel(reason="the connection failed")
                raise
            with trio.move_on_after(CLOSE_TIMEOUT):
                await connection.aclose(code=1000, reason="closing")
            nursery.cancel_scope.cancel(reason="the connection is closed")


@contextmanager
def _single_exceptions_unwrapped() -> Iterator[None]:
    """The nursery wraps whatever leaves it in an exception group; callers of a connection
    expect `OSError`, `ConnectionClosed`, ... themselves, so a group of one is unwrapped."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1 and not isinstance(group.exceptions[0], BaseExceptionGroup):
            raise group.exceptions[0] from None
        raise
