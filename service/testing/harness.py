"""Run workers under a real supervisor inside a test, the way the service runs them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio
from pydantic import BaseModel

from service.registry import start_order
from service.resources import Provided, Resources
from service.supervision import Supervisor
from service.worker import AnyWorkerSpec, ConfiguredWorker


@asynccontextmanager
async def supervised(
    *specs: AnyWorkerSpec,
    settings: Mapping[str, BaseModel] | None = None,
    resources: Iterable[Provided[Any]] = (),
    on_give_up: Callable[[str], None] | None = None,
) -> AsyncIterator[Supervisor]:
    """Start `specs` in `requires` order; on leaving the block, stop them as a signal would.

    Settings default to each worker's model with its defaults. `resources` are what the
    workers (and the jobs they run) `use`, each handed in with `provide(resource, value)`:
    a fake, or a real one opened around the block (`memory_database()`). A give-up stops the
    others, as in the service, and is reported to `on_give_up` if given.
    """
    chosen = settings or {}
    workers = [
        ConfiguredWorker(spec, chosen.get(spec.name) or spec.settings())
        for spec in start_order(list(specs))
    ]

    def gave_up(name: str) -> None:
        supervisor.stop()
        if on_give_up is not None:
            on_give_up(name)

    supervisor = Supervisor(workers, on_give_up=gave_up)
    async with trio.open_nursery() as nursery:
        opened = Resources({item.resource.name: item.value for item in resources})
        nursery.start_soon(supervisor.run, opened)
        try:
            yield supervisor
        finally:
            supervisor.stop()
