"""The resource: opened with its settings, closed on every way out of its users' block."""

from __future__ import annotations

import pytest
import trio

from service import Resources
from service.workers.my_worker import MyWorkerSettings, my_worker


async def test_the_client_has_its_settings_and_is_closed_after_use() -> None:
    settings = MyWorkerSettings(url="http://example.test", max_in_flight=2)
    async with my_worker.open(settings, Resources()) as client:
        assert client.url == "http://example.test"
        assert client.calls.total_tokens == 2
        await client.send("hello")
    with pytest.raises(trio.ClosedResourceError):
        await client.send("too late")


async def test_it_is_closed_when_a_user_fails_too() -> None:
    with pytest.raises(ValueError, match="a user failed"):
        async with my_worker.open(MyWorkerSettings(), Resources()) as client:
            raise ValueError("a user failed")
    with pytest.raises(trio.ClosedResourceError):
        await client.send("too late")
