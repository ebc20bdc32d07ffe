"""my_worker: a resource, a client that workers and jobs share.

A worker or a job that says `uses=[my_worker]`
gets the client with `ctx.use(my_worker)`, typed.
The service opens it before the first of its users starts and closes it after the last one
has stopped, on every way out: a clean stop, a crash, a cancellation. An error while opening
it stops the service at start-up (`resource.failed`, exit 2), before any user runs. A resource
that needs another says `uses=[other]` and takes the open ones as a second argument
(`opened: Resources`), then `opened.use(other)`.

Import this module in `service/app.py`, so that every process knows it and its settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio
from pydantic import BaseModel, ConfigDict, Field

from service import resource


class MyWorkerSettings(BaseModel):
    """Settings, from the environment (`SERVICE_MY_WORKER__<KEY>`)
    or from the `[my_worker]` table of the TOML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = "http://127.0.0.1:8000"
    max_in_flight: int = Field(default=10, ge=1, description="calls at once, all users together")


class MyWorkerClient:
    """What the users get. The connection (an HTTP client, a pool) lives here, and every call
    goes through `send`, so all users together never have more than `max_in_flight` at once."""

    def __init__(self, settings: MyWorkerSettings) -> None:
        self.url = settings.url
        self.calls = trio.CapacityLimiter(settings.max_in_flight)
        self._closed = False

    async def send(self, message: str) -> None:
        async with self.calls:
            if self._closed:
                raise trio.ClosedResourceError(f"the client of {self.url} is closed")
            # The call goes here, e.g. `await http.post(self.url, content=message)`.

    async def aclose(self) -> None:
        self._closed = True


@resource(settings=MyWorkerSettings)
async def my_worker(settings: MyWorkerSettings) -> AsyncIterator[MyWorkerClient]:
    client = MyWorkerClient(settings)
    try:
        yield client
    finally:
        await client.aclose()
