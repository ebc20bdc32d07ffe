"""The extension point: `@worker` turns an async function into a supervised worker.

A worker module is what users write, so everything a worker needs comes through its
`WorkerContext`: its name, logger, settings section, the soft-stop event, ticks bound to it,
and the resources it declared (`uses=[...]`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar, overload

import structlog
import trio
from pydantic import BaseModel
from structlog.typing import FilteringBoundLogger
from typing_extensions import TypeVar as DefaultTypeVar

from service.backoff import Backoff
from service.config import NoSettings
from service.resources import Database, Resource, Resources, db, names_of
from service.schedule import Ticks

RestartType = Literal["permanent", "transient", "temporary"]
RESTART_TYPES: tuple[RestartType, ...] = ("permanent", "transient", "temporary")

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


SettingsT = DefaultTypeVar("SettingsT", bound=BaseModel, default=NoSettings)
T = TypeVar("T")

DEFAULT_BACKOFF = Backoff()


@dataclass(slots=True)
class _Readiness:
    """The one thing about a running worker that changes: kept in an object of its own (as
    `stopping` is an event), so the context stays frozen instead of being written to with
    `object.__setattr__`."""

    reason: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class WorkerContext(Generic[SettingsT]):
    """What a running worker gets: identity, logger, settings and the soft-stop signal.

    A fresh context is made for every attempt, so nothing leaks from a crashed run into
    its restart.
    """

    name: str
    settings: SettingsT
    stopping: trio.Event = field(default_factory=trio.Event)
    attempt: int = 1
    resources: Resources = field(default_factory=Resources)
    log: FilteringBoundLogger = field(init=False)
    _readiness: _Readiness = field(default_factory=_Readiness, init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "log", structlog.get_logger().bind(worker=self.name))

    def every(self, interval: float) -> Ticks:
        """Tick every `interval` seconds on absolute deadlines until the soft stop begins."""
        return Ticks(interval, self.stopping)

    @overload
    def use(self, resource: Resource[T]) -> T: ...
    @overload
    def use(self, resource: str) -> Any: ...
    def use(self, resource: Resource[Any] | str) -> Any:
        """What `resource` yielded; the worker must declare it in `uses=[...]`."""
        return self.resources.use(resource)

    @property
    def db(self) -> Database:
        """The database, for a worker declared with `uses=[db]`: `ctx.use(db)`."""
        return self.use(db)

    @property
    def not_ready_reason(self) -> str | None:
        """Why this worker is not ready although it has started (None: it is ready)."""
        return self._readiness.reason

    def not_ready(self, reason: str) -> None:
        """Make the service not ready, with `reason` on `/readyz`, until `ready()` is called:
        for a worker that cannot do its work for now (a consumer while disconnected, say)."""
        self._readiness.reason = reason

    def ready(self) -> None:
        """Ready again (after `not_ready`)."""
        self._readiness.reason = None


class WorkerFunction(Protocol[SettingsT]):
    def __call__(
        self,
        ctx: WorkerContext[SettingsT],
        /,
        *,
        task_status: trio.TaskStatus[None] = ...,
    ) -> Awaitable[None]: ...


@dataclass(frozen=True, slots=True)
class WorkerSpec(Generic[SettingsT]):
    """A worker and its supervision policy, as declared by `@worker`."""

    name: str
    run: WorkerFunction[SettingsT]
    settings: type[SettingsT]
    restart: RestartType = "permanent"
    grace: float = 5.0
    requires: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    max_restarts: int = 5
    within: float = 60.0
    start_timeout: float = 30.0
    backoff: Backoff = DEFAULT_BACKOFF

    def needs(self) -> tuple[str, ...]:
        """The resources this worker's tasks use, by name: the runtime opens them first."""
        return self.uses

    def problems_with(self, settings: SettingsT) -> list[str]:
        """What is wrong with these (valid) settings given everything else declared: checked
        with the configuration, so it is reported before anything starts."""
        return []

    def __post_init__(self) -> None:
        problems = []
        if not _NAME.match(self.name):
            problems.append(
                f"name {self.name!r} must be lowercase letters, digits and _ (it names the "
                "worker's config section)"
            )
        if self.restart not in RESTART_TYPES:
            problems.append(
                f"restart must be one of {', '.join(RESTART_TYPES)}, not {self.restart!r}"
            )
        if not (0 <= self.grace < math.inf):
            problems.append(f"grace must be a finite number of seconds >= 0, not {self.grace!r}")
        if self.max_restarts < 0:
            problems.append(f"max_restarts must be >= 0, not {self.max_restarts!r}")
        if not self.within > 0:
            problems.append(f"within must be > 0 seconds, not {self.within!r}")
        if not self.start_timeout > 0:
            problems.append(f"start_timeout must be > 0 seconds, not {self.start_timeout!r}")
        if self.name in self.requires:
            problems.append("a worker cannot require itself")
        if problems:
            raise ValueError(f"worker {self.name!r}: " + "; ".join(problems))


def worker(
    *,
    name: str | None = None,
    restart: RestartType = "permanent",
    grace: float = 5.0,
    requires: tuple[str, ...] = (),
    uses: Sequence[Resource[Any] | str] = (),
    max_restarts: int = 5,
    within: float = 60.0,
    start_timeout: float = 30.0,
    backoff: Backoff = DEFAULT_BACKOFF,
    settings: type[SettingsT] = NoSettings,  # type: ignore[assignment]
) -> Callable[[WorkerFunction[SettingsT]], WorkerSpec[SettingsT]]:
    """Declare a supervised worker; docs/workers.md describes each policy knob."""

    def decorate(fn: WorkerFunction[SettingsT]) -> WorkerSpec[SettingsT]:
        return WorkerSpec(
            name=name or str(getattr(fn, "__name__", "")),
            run=fn,
            settings=settings,
            restart=restart,
            grace=grace,
            requires=tuple(requires),
            uses=names_of(uses),
            max_restarts=max_restarts,
            within=within,
            start_timeout=start_timeout,
            backoff=backoff,
        )

    return decorate


AnyWorkerSpec = WorkerSpec[Any]


@dataclass(frozen=True, slots=True)
class ConfiguredWorker:
    """A worker selected to run, with its settings section validated."""

    spec: AnyWorkerSpec
    settings: BaseModel
