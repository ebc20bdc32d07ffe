"""The whole service in-process, for tests that talk to it over HTTP or watch its loop.

Unlike `supervised` (the supervisor alone), this runs `Service.run`: the ops server on a free
port, the stall watchdog, the signal handlers, the shutdown protocol. Leaving the block stops
it as SIGTERM would (the two-phase stop), and waits until it has stopped. Unlike a real
service it never arms the forced exit: `os._exit(3)` would end the test process itself, and
every other test with it, without a report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from service.config import Settings
from service.registry import ServiceConfig, resource_order, start_order
from service.runtime.service import Service
from service.worker import AnyWorkerSpec, ConfiguredWorker


@dataclass(frozen=True, slots=True)
class RunningService:
    service: Service
    #: Where its ops server listens: (host, port).
    address: tuple[str, int]


def service_config(*specs: AnyWorkerSpec, **settings: object) -> ServiceConfig:
    """What the service would run for `specs`: `settings` over the defaults (and
    `ops_port=0`); the resources they use, opened with their default settings."""
    ordered = start_order(list(specs))
    used = resource_order({f"worker {spec.name!r}": spec.needs() for spec in ordered})
    return ServiceConfig(
        Settings.model_validate({"ops_port": 0, **settings}),
        tuple(ConfiguredWorker(spec, spec.settings()) for spec in ordered),
        tuple(used),
        {item.name: item.settings() for item in used},
    )


@asynccontextmanager
async def running_service(
    *specs: AnyWorkerSpec, **settings: object
) -> AsyncIterator[RunningService]:
    """Run `specs` in a `Service`, with `settings` over the defaults (and `ops_port=0`)."""
    service = Service(service_config(*specs, **settings), forced_exit=False)
    async with trio.open_nursery() as nursery:
        address = await nursery.start(service.run)
        try:
            yield RunningService(service, address)
        finally:
            service.stop("the test's block ended")
