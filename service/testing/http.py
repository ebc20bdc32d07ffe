"""A minimal HTTP/1.1 client for tests of the ops server: real sockets, one request each.

Each request opens its own connection and asks the server to close it (`Connection: close`),
so the response is everything read until the end of the stream: no keep-alive, no chunked
bodies to reassemble, nothing left open when the call returns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import trio

PATIENCE_S = 10.0


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: dict[str, str]  # names lowercased
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


async def http_get(
    address: tuple[str, int], path: str, *, headers: dict[str, str] | None = None
) -> HttpResponse:
    """`GET path` from the server at `address` (host, port)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {address[0]}:{address[1]}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    raw = await http_exchange(address, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    return parse_response(raw)


async def http_exchange(address: tuple[str, int], request: bytes) -> bytes:
    """Send `request` as it is (malformed, if a test wants it) and read until the server closes."""
    with trio.fail_after(PATIENCE_S):
        async with await trio.open_tcp_stream(*address) as stream:
            await stream.send_all(request)
            received = bytearray()
            while chunk := await stream.receive_some():
                received += chunk
            return bytes(received)


def parse_response(raw: bytes) -> HttpResponse:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return HttpResponse(int(status_line.split()[1]), headers, body)
