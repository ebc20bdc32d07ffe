"""The feed consumer: a long-lived websocket connection that survives what networks do to it.

The shape to copy for any long-lived network connection:
- connect, with a deadline on every step, and reconnect with exponential backoff and full
  jitter, reset once a connection has stayed up for `stable_seconds`;
- own the TCP stream (`connect_websocket`), so every way out closes the socket;
- heartbeat: a ping every `heartbeat_seconds`; a peer that stops answering (half-open TCP) is
  dropped within two intervals and the connection made again;
- hand each message to a bounded channel served by a few handler tasks: a slow handler slows
  the reading (back-pressure) instead of growing memory, and the heartbeat does not count the
  time the consumer itself held the reading back;
- a malformed message (not JSON, the wrong shape, binary, too large) is counted, logged at a
  limited rate, and skipped: one bad message never costs the connection;
- not ready while disconnected or backing off;
- at the soft stop: stop reading, close the websocket with 1000 (normal closure), and let
  the handlers finish what was already received, within the grace period.

What to do with each message is `handle_event`: the place for business logic. The example
defers a `place_order` job for orders, so they are processed durably by the job poller. While
the database is unavailable, a handler retries its event with backoff (and the consumer is not
ready): the reading slows down behind it instead of dropping orders.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio
import trio_websocket
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from structlog.typing import FilteringBoundLogger

from service import (
    Backoff,
    Database,
    DatabaseOutage,
    JobContext,
    RateLimitedLog,
    WorkerContext,
    connect_websocket,
    db,
    job,
    metrics,
    split_url,
    unit_of_work,
    worker,
)

CONNECTED = metrics.gauge("service_feed_connected", "1 while the feed consumer is connected.")
MESSAGES = metrics.counter("service_feed_messages", "Messages the feed consumer received.")
BAD_MESSAGES = metrics.counter(
    "service_feed_bad_messages", "Messages the feed consumer rejected as malformed."
)


class FeedConsumerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = "ws://127.0.0.1:8765/events"
    heartbeat_seconds: float = Field(default=5.0, gt=0, allow_inf_nan=False)
    connect_timeout: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    handlers: int = Field(default=4, ge=1, description="handler tasks")
    queue_size: int = Field(default=64, ge=1, description="received, not yet handled")
    max_message_size: int = Field(default=65_536, ge=1, description="characters")
    reconnect_initial: float = Field(default=0.1, ge=0, allow_inf_nan=False)
    reconnect_cap: float = Field(default=10.0, ge=0, allow_inf_nan=False)
    stable_seconds: float = Field(default=30.0, ge=0, allow_inf_nan=False)
    bad_message_log_period: float = Field(default=10.0, ge=0, allow_inf_nan=False)

    @field_validator("url")
    @classmethod
    def _websocket_url(cls, value: str) -> str:
        split_url(value)  # raises ValueError, naming the URL
        return value


class FeedEvent(BaseModel):
    """One message of the feed: `{"type": ..., "seq": ..., "data": {...}}`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str
    seq: int
    data: dict[str, Any] = {}
    trace_id: str | None = None


class BadMessage(ValueError):
    """A message the consumer cannot use; it is skipped."""


def parse(message: str | bytes, max_size: int) -> FeedEvent:
    if isinstance(message, bytes):
        raise BadMessage(f"binary message ({len(message)} bytes) where text is expected")
    if len(message) > max_size:
        raise BadMessage(f"oversize: {len(message)} characters, the limit is {max_size}")
    try:
        return FeedEvent.model_validate_json(message)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        if first["type"] == "json_invalid":
            raise BadMessage(f"not JSON: {first['msg']}") from None
        where = ".".join(str(part) for part in first["loc"]) or "message"
        raise BadMessage(f"wrong shape: {where}: {first['msg']}") from None


class Order(BaseModel):
    order: dict[str, Any]


@job()
async def place_order(payload: Order, ctx: JobContext) -> None:
    """An order from the feed, durably, in the job poller. Real work goes here: reserve stock,
    charge, ..."""
    ctx.log.info("order.placed", order=payload.order)


async def handle_event(event: FeedEvent, *, db: Database, log: FilteringBoundLogger) -> None:
    """The business logic for one feed event, inside its unit of work."""
    if event.type == "order":
        job_id = await place_order.defer(db, Order(order=event.data))
        log.info("feed.order", seq=event.seq, job_id=job_id)
    else:
        log.debug("feed.event", type=event.type, seq=event.seq)


class _Liveness:
    """Counts the times the reader held back for the handlers, so the heartbeat can tell a
    silent peer from a consumer that stopped listening on purpose."""

    def __init__(self) -> None:
        self.holding_back = False
        self.hold_backs = 0


class _Ended(Exception):
    """Why a connection ended (its message is the `reason` of `feed.disconnected`)."""


@worker(uses=[db], grace=5.0, settings=FeedConsumerSettings)
async def feed_consumer(
    ctx: WorkerContext[FeedConsumerSettings],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    consumer = _Consumer(ctx)
    send, receive = trio.open_memory_channel[FeedEvent](ctx.settings.queue_size)
    async with trio.open_nursery() as handlers:
        async with receive:
            for _ in range(ctx.settings.handlers):
                handlers.start_soon(consumer.handle, receive.clone())
        handlers.start_soon(consumer.abandon_connecting_at_stop)
        task_status.started()
        async with send:  # closed at the end: the handlers finish what is queued, then exit
            await consumer.connect_until_stopped(send)


class _Consumer:
    def __init__(self, ctx: WorkerContext[FeedConsumerSettings]) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.outage = DatabaseOutage(ctx)
        self.bad_messages = RateLimitedLog(
            ctx.log, "feed.bad_message", period=ctx.settings.bad_message_log_period
        )
        self.reconnects = Backoff(
            ctx.settings.reconnect_initial, ctx.settings.reconnect_cap
        ).tracker()
        self.connecting: list[trio.CancelScope] = []  # the attempt under way, if any

    async def handle(self, events: trio.MemoryReceiveChannel[FeedEvent]) -> None:
        """One of the handler tasks: each event is a unit of work of its own."""
        async with events:
            async for event in events:
                with unit_of_work(event.trace_id):
                    handle = partial(handle_event, event, db=self.ctx.db, log=self.ctx.log)
                    try:
                        await self.outage.retry(handle)
                    except Exception:  # one failed message must not stop the others
                        self.ctx.log.exception(
                            "feed.handler_failed", type=event.type, seq=event.seq
                        )

    async def abandon_connecting_at_stop(self) -> None:
        await self.ctx.stopping.wait()
        for scope in self.connecting:
            scope.cancel(reason="the soft stop")

    async def connect_until_stopped(self, send: trio.MemorySendChannel[FeedEvent]) -> None:
        ctx, settings = self.ctx, self.settings
        while not ctx.stopping.is_set():
            ctx.not_ready(f"connecting to {settings.url}")
            began = trio.current_time()
            try:
                with trio.CancelScope() as attempt:
                    self.connecting.append(attempt)
                    async with connect_websocket(
                        settings.url,
                        connect_timeout=settings.connect_timeout,
                        max_message_size=4 * settings.max_message_size,
                    ) as connection:
                        self.connecting.clear()
                        ctx.ready()
                        ctx.log.info("feed.connected", url=settings.url)
                        CONNECTED.set(1)
                        await self.serve(connection, send)
                reason = "service stopping"
            except _CONNECTION_FAILURES as exc:
                reason = _failure_reason(exc, settings.connect_timeout)
            finally:
                self.connecting.clear()
                CONNECTED.set(0)
            if ctx.stopping.is_set():
                ctx.log.info("feed.disconnected", url=settings.url, reason="service stopping")
                return
            if trio.current_time() - began >= settings.stable_seconds:
                self.reconnects.reset()
            delay = self.reconnects.next_delay()
            ctx.log.info(
                "feed.disconnected", url=settings.url, reason=reason, retry_in_s=round(delay, 3)
            )
            ctx.not_ready(f"disconnected ({reason}); reconnecting")
            with trio.move_on_after(delay):
                await ctx.stopping.wait()

    async def serve(
        self,
        connection: trio_websocket.WebSocketConnection,
        send: trio.MemorySendChannel[FeedEvent],
    ) -> None:
        """Read until the soft stop (return) or until the connection ends (`_Ended`)."""
        liveness = _Liveness()
        ended: list[_Ended] = []
        async with trio.open_nursery() as nursery:

            async def until_ended(part: Callable[[], Awaitable[None]]) -> None:
                try:
                    await part()
                except _Ended as exc:
                    ended.append(exc)
                except trio_websocket.ConnectionClosed as exc:
                    ended.append(_Ended(_closed_reason(exc)))
                nursery.cancel_scope.cancel(reason="the connection ended")

            async def until_stopping() -> None:
                await self.ctx.stopping.wait()
                nursery.cancel_scope.cancel(reason="the soft stop: no more reading")

            nursery.start_soon(until_ended, partial(self.read, connection, send, liveness))
            nursery.start_soon(until_ended, partial(self.heartbeat, connection, liveness))
            nursery.start_soon(until_stopping)
        if ended:
            raise ended[0]

    async def read(
        self,
        connection: trio_websocket.WebSocketConnection,
        send: trio.MemorySendChannel[FeedEvent],
        liveness: _Liveness,
    ) -> None:
        while True:
            message = await connection.get_message()
            MESSAGES.inc()
            try:
                event = parse(message, self.settings.max_message_size)
            except BadMessage as exc:
                BAD_MESSAGES.inc()
                self.bad_messages.warning(reason=str(exc))
                continue
            try:
                send.send_nowait(event)
            except trio.WouldBlock:  # the handlers are behind: wait for them
                liveness.holding_back = True
                liveness.hold_backs += 1
                try:
                    await send.send(event)
                finally:
                    liveness.holding_back = False

    async def heartbeat(
        self, connection: trio_websocket.WebSocketConnection, liveness: _Liveness
    ) -> None:
        interval = self.settings.heartbeat_seconds
        while True:
            await trio.sleep(interval)
            hold_backs = liveness.hold_backs
            with trio.move_on_after(interval) as waiting:
                await connection.ping()
            # A pong stuck behind messages the reader held back proves nothing about the peer.
            held_back = liveness.holding_back or liveness.hold_backs != hold_backs
            if waiting.cancelled_caught and not held_back:
                raise _Ended(f"no pong within {interval:g}s")


_CONNECTION_FAILURES = (
    _Ended,
    OSError,
    trio.TooSlowError,
    trio.BrokenResourceError,
    trio_websocket.HandshakeError,
    trio_websocket.ConnectionClosed,
)


def _closed_reason(exc: trio_websocket.ConnectionClosed) -> str:
    if exc.reason is None:
        return "closed"
    text = f"closed by peer: {exc.reason.code} ({exc.reason.name})"
    return f"{text}: {exc.reason.reason}" if exc.reason.reason else text


def _failure_reason(exc: BaseException, connect_timeout: float) -> str:
    if isinstance(exc, _Ended):
        reason = str(exc)
    elif isinstance(exc, trio_websocket.ConnectionClosed):
        reason = _closed_reason(exc)
    elif isinstance(exc, trio.TooSlowError):
        reason = f"connect or handshake took over {connect_timeout:g}s"
    elif isinstance(exc, trio_websocket.ConnectionRejected):
        reason = f"handshake rejected: HTTP {exc.status_code}"
    elif isinstance(exc, trio_websocket.HandshakeError):
        reason = f"handshake failed: {exc!r}"
    elif isinstance(exc, trio.BrokenResourceError):
        reason = "connection lost"
    else:
        reason = f"connect failed: {exc}"
    return reason
