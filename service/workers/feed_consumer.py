"""The feed consumer: a long-lived websocket connection that survives what networks do to it.

The shape to copy for any long-lived network connection:
- connect, with a deadline on every step, and reconnect with exponential backoff and full
  jitter, reset once a connection has stayed up for `stable_seconds`;
- own the TCP stream (`connect_websocket`), so every way out closes the socket;
- heartbeat: a ping every `heartbeat_seconds`; a peer that stops answering (half-open TCP) is
  dropped within two intervals and the connection made again;
- hand what was received to a bounded inbox served by a few handler tasks, a batch at a time
  (every message one read brought in, in one operation): a slow handler slows the reading
  (back-pressure) instead of growing memory, and the heartbeat does not count the time the
  consumer itself held the reading back;
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

from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from structlog.typing import FilteringBoundLogger

from service import (
    Backoff,
    ConnectionClosed,
    Database,
    DatabaseOutage,
    HandshakeError,
    JobContext,
    RateLimitedLog,
    WebSocketConnection,
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
        event: FeedEvent = _validate_json(message)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        if first["type"] == "json_invalid":
            raise BadMessage(f"not JSON: {first['msg']}") from None
        where = ".".join(str(part) for part in first["loc"]) or "message"
        raise BadMessage(f"wrong shape: {where}: {first['msg']}") from None
    return event


#: `FeedEvent.model_validate_json` without its wrapper, a third of the validation's cost.
_validate_json = FeedEvent.__pydantic_validator__.validate_json


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
    inbox = _Inbox(ctx.settings.queue_size)
    async with trio.open_nursery() as handlers:
        for _ in range(ctx.settings.handlers):
            handlers.start_soon(consumer.handle, inbox)
        handlers.start_soon(consumer.abandon_connecting_at_stop)
        task_status.started()
        try:
            await consumer.connect_until_stopped(inbox)
        finally:  # the handlers finish what is queued, then exit
            inbox.close()


class _Inbox:
    """Events received, not yet handled: bounded in events, filled a whole batch at a time
    (one operation however many events a read brought), emptied one event at a time by the
    handlers. A memory channel costs a hand-off per event; at feed rates that is the budget."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._events: deque[FeedEvent] = deque()
        self._handlers = trio.lowlevel.ParkingLot()  # waiting for events
        self._reader = trio.lowlevel.ParkingLot()  # waiting for room
        self._reader_waiting = False
        self._closed = False

    @property
    def room(self) -> int:
        return self.capacity - len(self._events)

    def put(self, events: list[FeedEvent]) -> None:
        """Queue `events` (the caller took no more than `room`, or one)."""
        self._events.extend(events)
        self._handlers.unpark(count=len(events))

    async def wait_for_room(self) -> None:
        while self.room <= 0:
            self._reader_waiting = True
            try:
                await self._reader.park()
            finally:
                self._reader_waiting = False

    def get_nowait(self) -> FeedEvent | None:
        """The next event, None if there is none."""
        if not self._events:
            return None
        if self._reader_waiting:
            self._reader.unpark()
        return self._events.popleft()

    async def wait_for_events(self) -> bool:
        """Until there are events (True), or none will come: closed and empty (False)."""
        while not self._events:
            if self._closed:
                return False
            await self._handlers.park()
        return True

    def close(self) -> None:
        self._closed = True
        self._handlers.unpark_all()


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

    async def handle(self, inbox: _Inbox) -> None:
        """One of the handler tasks: each event is a unit of work of its own."""
        while True:
            # No checkpoint while there are events: a handler that never awaits still parks
            # once the inbox is empty, after at most `queue_size` events.
            event = inbox.get_nowait()
            if event is None:
                if await inbox.wait_for_events():
                    continue
                return
            with unit_of_work(event.trace_id):
                handle = partial(handle_event, event, db=self.ctx.db, log=self.ctx.log)
                try:
                    await self.outage.retry(handle)
                except Exception:  # one failed message must not stop the others
                    self.ctx.log.exception("feed.handler_failed", type=event.type, seq=event.seq)

    async def abandon_connecting_at_stop(self) -> None:
        await self.ctx.stopping.wait()
        for scope in self.connecting:
            scope.cancel(reason="the soft stop")

    async def connect_until_stopped(self, inbox: _Inbox) -> None:
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
                        await self.serve(connection, inbox)
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

    async def serve(self, connection: WebSocketConnection, inbox: _Inbox) -> None:
        """Read until the soft stop (return) or until the connection ends (`_Ended`)."""
        liveness = _Liveness()
        ended: list[_Ended] = []
        async with trio.open_nursery() as nursery:

            async def until_ended(part: Callable[[], Awaitable[None]]) -> None:
                try:
                    await part()
                except _Ended as exc:
                    ended.append(exc)
                except ConnectionClosed as exc:
                    ended.append(_Ended(str(exc)))
                nursery.cancel_scope.cancel(reason="the connection ended")

            async def until_stopping() -> None:
                await self.ctx.stopping.wait()
                nursery.cancel_scope.cancel(reason="the soft stop: no more reading")

            nursery.start_soon(until_ended, partial(self.read, connection, inbox, liveness))
            nursery.start_soon(until_ended, partial(self.heartbeat, connection, liveness))
            nursery.start_soon(until_stopping)
        if ended:
            raise ended[0]

    async def read(
        self, connection: WebSocketConnection, inbox: _Inbox, liveness: _Liveness
    ) -> None:
        """Take what the connection has received, as much as the inbox has room for."""
        max_size = self.settings.max_message_size
        while True:
            messages = await connection.get_messages(limit=max(inbox.room, 1))
            MESSAGES.inc(len(messages))
            events = []
            for message in messages:
                try:
                    events.append(parse(message, max_size))
                except BadMessage as exc:
                    self.bad_messages.warning(reason=str(exc))
            if len(events) < len(messages):
                BAD_MESSAGES.inc(len(messages) - len(events))
            if events and inbox.room <= 0:  # the handlers are behind: wait for them
                liveness.holding_back = True
                liveness.hold_backs += 1
                try:
                    await inbox.wait_for_room()
                finally:
                    liveness.holding_back = False
            inbox.put(events)

    async def heartbeat(self, connection: WebSocketConnection, liveness: _Liveness) -> None:
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
    HandshakeError,
    ConnectionClosed,
)


def _failure_reason(exc: BaseException, connect_timeout: float) -> str:
    if isinstance(exc, _Ended | ConnectionClosed):
        reason = str(exc)
    elif isinstance(exc, trio.TooSlowError):
        reason = f"connect or handshake took over {connect_timeout:g}s"
    elif isinstance(exc, HandshakeError):  # says "handshake rejected: HTTP 404", ...
        reason = str(exc)
    elif isinstance(exc, trio.BrokenResourceError):
        reason = "connection lost"
    else:
        reason = f"connect failed: {exc}"
    return reason
