"""my_worker: consumes a websocket stream, message by message.

A consumer, the shape of the feed_consumer example, for any long-lived connection:
- connect, each step within `connect_timeout`, owning the TCP stream (`connect_websocket`),
  so that every way out closes the socket;
- reconnect with exponential backoff and full jitter, reset once a connection has stayed up
  for `stable_seconds`; not ready while disconnected;
- hand each message to a bounded channel served by `handlers` tasks: a slow handler slows
  the reading (back-pressure) instead of growing memory;
- a message whose handling fails is logged and skipped: it never costs the connection;
- at the soft stop: stop reading, close with 1000 (normal closure), and let the handlers
  finish what was already received, within the grace period.

The work goes in `handle`. Where the peer can go silent (half-open TCP), add a heartbeat:
`connection.ping()` under `trio.move_on_after`; mind that a pong waits behind messages the
reader holds back while the handlers are busy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio
from pydantic import BaseModel, ConfigDict, Field, field_validator

from service import (
    Backoff,
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    WorkerContext,
    connect_websocket,
    split_url,
    unit_of_work,
    worker,
)

Message = str | bytes


class MyWorkerSettings(BaseModel):
    """Settings, from the environment (`SERVICE_MY_WORKER__<KEY>`)
    or from the `[my_worker]` table of the TOML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = "ws://127.0.0.1:8765/events"
    connect_timeout: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    handlers: int = Field(default=4, ge=1, description="handler tasks")
    queue_size: int = Field(default=64, ge=1, description="received, not yet handled")
    max_message_size: int = Field(default=1_048_576, ge=1, description="bytes")
    reconnect_initial: float = Field(default=0.1, ge=0, allow_inf_nan=False)
    reconnect_cap: float = Field(default=10.0, ge=0, allow_inf_nan=False)
    stable_seconds: float = Field(default=30.0, ge=0, allow_inf_nan=False)

    @field_validator("url")
    @classmethod
    def _websocket_url(cls, value: str) -> str:
        split_url(value)  # raises ValueError, naming the URL
        return value


async def handle(ctx: WorkerContext[MyWorkerSettings], message: Message) -> None:
    """One message's work, in a unit of work of its own. An exception skips the message."""
    ctx.log.info("my_worker.message", size=len(message))


@worker(grace=5.0, settings=MyWorkerSettings)
async def my_worker(
    ctx: WorkerContext[MyWorkerSettings],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    soft_stop = _SoftStop(ctx.stopping)
    send, receive = trio.open_memory_channel[Message](ctx.settings.queue_size)
    async with trio.open_nursery() as nursery:
        async with receive:
            for _ in range(ctx.settings.handlers):
                nursery.start_soon(_handle_each, ctx, receive.clone())
        nursery.start_soon(soft_stop.watch)
        task_status.started()
        async with send:  # closed at the end: the handlers finish what is queued, then exit
            await _consume(ctx, soft_stop, send)


async def _handle_each(
    ctx: WorkerContext[MyWorkerSettings], messages: trio.MemoryReceiveChannel[Message]
) -> None:
    async with messages:
        async for message in messages:
            with unit_of_work():
                try:
                    await handle(ctx, message)
                except Exception:  # one failed message must not stop the others
                    ctx.log.exception("my_worker.handler_failed")


async def _consume(
    ctx: WorkerContext[MyWorkerSettings],
    soft_stop: _SoftStop,
    send: trio.MemorySendChannel[Message],
) -> None:
    """Connect and read until the soft stop; after a failure, reconnect with backoff."""
    settings = ctx.settings
    reconnects = Backoff(settings.reconnect_initial, settings.reconnect_cap).tracker()
    while not ctx.stopping.is_set():
        ctx.not_ready(f"connecting to {settings.url}")
        began = trio.current_time()
        try:
            with soft_stop.interrupts():  # a connection attempt is abandoned
                async with connect_websocket(
                    settings.url,
                    connect_timeout=settings.connect_timeout,
                    max_message_size=settings.max_message_size,
                ) as connection:
                    ctx.ready()
                    ctx.log.info("my_worker.connected", url=settings.url)
                    # Reading ends at the soft stop; leaving the block closes with 1000.
                    with soft_stop.interrupts():
                        await _read(connection, send)
        except _CONNECTION_FAILURES as exc:
            reason = str(exc) or type(exc).__name__
        else:
            return  # the soft stop
        if trio.current_time() - began >= settings.stable_seconds:
            reconnects.reset()
        delay = reconnects.next_delay()
        ctx.not_ready(f"disconnected ({reason}); reconnecting")
        ctx.log.info(
            "my_worker.disconnected", url=settings.url, reason=reason, retry_in_s=round(delay, 3)
        )
        with trio.move_on_after(delay):
            await ctx.stopping.wait()


async def _read(connection: WebSocketConnection, send: trio.MemorySendChannel[Message]) -> None:
    while True:
        message = await connection.get_message()
        await send.send(message)  # waits while the handlers are behind: back-pressure


class _SoftStop:
    """At the soft stop, cancels the innermost `interrupts()` block in force.

    While connecting, that abandons the attempt; once connected, it ends the reading only, so
    the connection is closed with a handshake rather than dropped.
    """

    def __init__(self, stopping: trio.Event) -> None:
        self._stopping = stopping
        self._scopes: list[trio.CancelScope] = []

    async def watch(self) -> None:
        await self._stopping.wait()
        if self._scopes:
            self._scopes[-1].cancel(reason="the soft stop")

    @contextmanager
    def interrupts(self) -> Iterator[None]:
        with trio.CancelScope() as scope:
            if self._stopping.is_set():
                scope.cancel(reason="the soft stop")
            self._scopes.append(scope)
            try:
                yield
            finally:
                self._scopes.pop()


_CONNECTION_FAILURES = (
    OSError,
    trio.TooSlowError,
    trio.BrokenResourceError,
    HandshakeError,
    ConnectionClosed,
)
