"""A demo feed: a websocket server on loopback publishing a steady stream of JSON events.

It exists so that `./scripts/run` shows the consumer at work with nothing else installed. In
production, point `SERVICE_FEED_CONSUMER__URL` at the real feed and drop `feed` from
`SERVICE_WORKERS`. At the soft stop it stops accepting and closes every connection with 1001
(going away), so clients see a clean close rather than a dropped socket.
"""

from __future__ import annotations

import json
import random
from functools import partial

import trio
import trio_websocket
from pydantic import BaseModel, ConfigDict, Field

from service import WorkerContext, new_trace_id, worker


class FeedSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535, description="0: any free port")
    interval: float = Field(default=0.5, gt=0, allow_inf_nan=False, description="seconds")


@worker(grace=3.0, settings=FeedSettings)
async def feed(
    ctx: WorkerContext[FeedSettings],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    settings = ctx.settings

    async def publish(request: trio_websocket.WebSocketRequest) -> None:
        connection = await request.accept()
        try:
            async for tick in ctx.every(settings.interval):
                await connection.send_message(json.dumps(_event(tick.number)))
        except trio_websocket.ConnectionClosed:
            return  # the client left
        await connection.aclose(code=1001, reason="the feed is stopping")

    async with trio.open_nursery() as connections, trio.open_nursery() as listening:
        server = await listening.start(
            partial(
                trio_websocket.serve_websocket,
                publish,
                settings.host,
                settings.port,
                None,
                handler_nursery=connections,
            )
        )
        ctx.log.info("feed.listening", host=settings.host, port=server.port)
        task_status.started()
        await ctx.stopping.wait()
        listening.cancel_scope.cancel(reason="the soft stop: no new connections")
        # Each connection's ticks end at the soft stop; they close themselves.


def _event(seq: int) -> dict[str, object]:
    if seq % 5 == 4:
        return {
            "type": "order",
            "seq": seq,
            "trace_id": new_trace_id(),
            "data": {"symbol": "TRIO", "quantity": random.randint(1, 100)},
        }
    return {"type": "price", "seq": seq, "data": {"symbol": "TRIO", "price": 100 + seq % 7}}
