"""`@job`: a typed job type, deferred by anyone, run by whichever process polls for it.

    class Alert(BaseModel):
        city: str

    @job(uses=[alert_client], max_attempts=3, timeout=10.0)
    async def send_alert(payload: Alert, ctx: JobContext) -> None:
        await ctx.use(alert_client).send(payload.city)

    await send_alert.defer(ctx.db, Alert(city="Oslo"), delay=60, key="oslo", priority=1)

The payload travels as JSON (`{"type": "send_alert", "city": "Oslo"}`) and is validated
against its model before the function runs: a payload that fails validation is dead-lettered
at once, with the validation error. Job types register themselves when their module is
imported, which is why `service/app.py` imports every module of the project: a replica that
runs only the poller must know every type.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

import structlog
from pydantic import BaseModel
from structlog.typing import FilteringBoundLogger

from service.jobs.table import DEFAULT_QUEUE, JobTable
from service.resources import Database, Resource, Resources, names_of

PayloadT = TypeVar("PayloadT", bound=BaseModel)
T = TypeVar("T")

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")

#: The payload key that names the job type: a payload model cannot have a field of that name.
TYPE_KEY = "type"

#: Every job type declared in this process, by name: filled as modules are imported.
REGISTERED: dict[str, JobType[Any]] = {}


class JobContext:
    """What a running job gets: its identity, a logger bound with it, and its resources."""

    __slots__ = ("_log", "_poller_log", "attempt", "job_id", "resources", "trace_id")

    def __init__(
        self,
        job_id: str,
        trace_id: str,
        attempt: int,
        log: FilteringBoundLogger,
        resources: Resources,
    ) -> None:
        self.job_id = job_id
        self.trace_id = trace_id
        self.attempt = attempt
        self.resources = resources
        self._poller_log = log
        self._log: FilteringBoundLogger | None = None

    @property
    def log(self) -> FilteringBoundLogger:
        """The poller's logger bound with `job_id` and `trace_id` (bound on first use: most
        jobs of a busy queue never log, and binding costs a microsecond)."""
        if self._log is None:
            self._log = self._poller_log.bind(job_id=self.job_id, trace_id=self.trace_id)
        return self._log

    @overload
    def use(self, resource: Resource[T]) -> T: ...
    @overload
    def use(self, resource: str) -> Any: ...
    def use(self, resource: Resource[Any] | str) -> Any:
        """What `resource` yielded; the job type must declare it in `uses=[...]`."""
        return self.resources.use(resource)


JobFunction = Callable[[PayloadT, JobContext], Awaitable[None]]


@dataclass(frozen=True, slots=True, eq=False)
class JobType(Generic[PayloadT]):
    """A declared job type: `defer` enqueues one; the poller runs it."""

    name: str
    function: JobFunction[PayloadT]
    payload: type[PayloadT]
    uses: tuple[str, ...] = ()
    #: None: the poller's own setting (`SERVICE_JOBS__MAX_ATTEMPTS`, `__JOB_TIMEOUT`).
    max_attempts: int | None = None
    timeout: float | None = None
    #: Which poller runs it: `job_poller(queue=...)`.
    queue: str = DEFAULT_QUEUE

    async def defer(
        self,
        db: Database,
        payload: PayloadT,
        *,
        delay: float = 0.0,
        key: str | None = None,
        priority: int = 0,
    ) -> str:
        """Enqueue one job; its id. It carries the current unit of work's trace id.

        `delay`: seconds before it is due. `key`: while a job of this type with the same key
        is pending or running, deferring another returns that one's id instead. `priority`:
        higher runs first among the jobs that are due.
        """
        if not isinstance(payload, self.payload):
            raise TypeError(
                f"job {self.name!r} takes a {self.payload.__name__}, not {type(payload).__name__}"
            )
        document = {TYPE_KEY: self.name, **payload.model_dump(mode="json")}
        trace_id = structlog.contextvars.get_contextvars().get("trace_id")
        [job_id] = await JobTable(db).enqueue(
            [document],
            trace_id=trace_id,
            delay=delay,
            key=None if key is None else f"{self.name}:{key}",
            priority=priority,
            queue=self.queue,
        )
        return job_id

    async def __call__(self, payload: PayloadT, ctx: JobContext) -> None:
        """Run the function directly (a test, or one job calling another inline)."""
        await self.function(payload, ctx)


def job(
    *,
    name: str | None = None,
    uses: Sequence[Resource[Any] | str] = (),
    max_attempts: int | None = None,
    timeout: float | None = None,
    queue: str = DEFAULT_QUEUE,
) -> Callable[[JobFunction[PayloadT]], JobType[PayloadT]]:
    """Declare a job type; its payload model is the type of the function's first parameter.

    A `queue` of its own gives it a poller of its own (`job_poller(name=..., queue=...)`),
    with its own concurrency, so a flood of one kind of job cannot starve the others.
    """

    def decorate(function: JobFunction[PayloadT]) -> JobType[PayloadT]:
        declared_name = name or str(getattr(function, "__name__", ""))
        declared = JobType(
            name=declared_name,
            function=function,
            payload=_payload_model(declared_name, function),
            uses=names_of(uses),
            max_attempts=max_attempts,
            timeout=timeout,
            queue=queue,
        )
        _check(declared)
        REGISTERED[declared.name] = declared
        return declared

    return decorate


def _payload_model(name: str, function: Callable[..., Any]) -> type[Any]:
    parameters = list(inspect.signature(function).parameters)
    if len(parameters) != 2 or not inspect.iscoroutinefunction(function):
        raise ValueError(f"job {name!r}: it must be `async def {name}(payload: Model, ctx)`")
    try:
        hints = typing.get_type_hints(function)
    except NameError as exc:
        raise ValueError(f"job {name!r}: its payload type cannot be resolved: {exc}") from None
    model = hints.get(parameters[0])
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"job {name!r}: annotate its payload with a pydantic model")
    if TYPE_KEY in model.model_fields:
        raise ValueError(f"job {name!r}: {TYPE_KEY!r} is reserved for the job type's name")
    return model


def _check(declared: JobType[Any]) -> None:
    problems = []
    if not _NAME.match(declared.name):
        problems.append("the name must be lowercase letters, digits and _")
    if not _NAME.match(declared.queue):
        problems.append("the queue's name must be lowercase letters, digits and _")
    if declared.max_attempts is not None and declared.max_attempts < 1:
        problems.append(f"max_attempts must be >= 1, not {declared.max_attempts!r}")
    if declared.timeout is not None and not declared.timeout > 0:
        problems.append(f"timeout must be > 0 seconds, not {declared.timeout!r}")
    other = REGISTERED.get(declared.name)
    if other is not None and _origin(other) != _origin(declared):
        problems.append(f"the name is taken by {_origin(other)}")
    if problems:
        raise ValueError(f"job {declared.name!r}: " + "; ".join(problems))


def _origin(declared: JobType[Any]) -> str:
    return f"{declared.function.__module__}.{declared.function.__qualname__}"


class EchoPayload(BaseModel):
    message: str | None = None


@job()
async def echo(payload: EchoPayload, ctx: JobContext) -> None:
    """`python -m service jobs enqueue`'s default: says what it was given (a smoke test)."""
    ctx.log.info("job.echo", message=payload.message)
