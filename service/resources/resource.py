"""`@resource`: something workers and jobs share, opened once and closed on every way out.

A resource is an async generator function: it sets up, `yields` what its users get, and tears
down after the `yield`. The runtime opens the resources the selected workers (and the jobs they
run) use before the first of them starts, in dependency order, and closes them after the last
has stopped, in reverse order, whether the service stops cleanly, crashes or is cancelled.

    @resource(settings=ClientSettings)            # settings: SERVICE_ALERT_CLIENT__*
    async def alert_client(settings: ClientSettings) -> AsyncIterator[Client]:
        async with Client(settings.prefix) as client:
            yield client

A resource that needs another says `uses=[other]` and takes what is open as a second argument:
`async def cache(settings: CacheSettings, opened: Resources) -> ...: opened.use(db)`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from pydantic import BaseModel

from service.config import NoSettings
from service.exception_groups import sole

T = TypeVar("T")
SettingsT = TypeVar("SettingsT", bound=BaseModel)

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")

#: Every resource declared in this process, by name: filled as modules are imported.
REGISTERED: dict[str, Resource[Any]] = {}

ResourceFunction = (
    Callable[[], AsyncIterator[T]]
    | Callable[[SettingsT], AsyncIterator[T]]
    | Callable[[SettingsT, "Resources"], AsyncIterator[T]]
)


@dataclass(frozen=True, slots=True, eq=False)
class Resource(Generic[T]):
    """A declared resource; `ctx.use(it)` returns what its function yielded, typed `T`."""

    name: str
    function: Callable[..., AsyncIterator[T]]
    settings: type[BaseModel]
    uses: tuple[str, ...]

    def open(self, settings: BaseModel, opened: Resources) -> AbstractAsyncContextManager[T]:
        """The context manager that sets this resource up with its validated settings."""
        arguments = (settings, opened)[: _arity(self.function)]
        return asynccontextmanager(self.function)(*arguments)

    def __repr__(self) -> str:
        return f"<resource {self.name}>"


def resource(
    *,
    name: str | None = None,
    settings: type[BaseModel] = NoSettings,
    uses: Sequence[Resource[Any] | str] = (),
) -> Callable[[ResourceFunction[T, Any]], Resource[T]]:
    """Declare a resource; its name (the function's, unless given) names its settings section."""

    def decorate(function: ResourceFunction[T, Any]) -> Resource[T]:
        declared = Resource(
            name=name or str(getattr(function, "__name__", "")),
            function=function,
            settings=settings,
            uses=names_of(uses),
        )
        _check(declared)
        REGISTERED[declared.name] = declared
        return declared

    return decorate


def names_of(uses: Iterable[Resource[Any] | str]) -> tuple[str, ...]:
    """`uses=[...]` as names: a resource object or its name mean the same."""
    if isinstance(uses, str):
        raise TypeError(f"uses must be a list of resources, not the string {uses!r}")
    return tuple(item if isinstance(item, str) else item.name for item in uses)


def _check(declared: Resource[Any]) -> None:
    problems = []
    if not _NAME.match(declared.name):
        problems.append(
            "the name must be lowercase letters, digits and _ (it names the settings section)"
        )
    if not inspect.isasyncgenfunction(declared.function):
        problems.append("it must be an async generator function (set up, yield it, tear down)")
    elif _arity(declared.function) > 2:
        problems.append("its function takes (settings) or (settings, opened resources) at most")
    if declared.name in declared.uses:
        problems.append("a resource cannot use itself")
    other = REGISTERED.get(declared.name)
    if other is not None and _origin(other) != _origin(declared):
        problems.append(f"the name is taken by {_origin(other)}")
    if problems:
        raise ValueError(f"resource {declared.name!r}: " + "; ".join(problems))


def _origin(declared: Resource[Any]) -> str:
    return f"{declared.function.__module__}.{declared.function.__qualname__}"


def _arity(function: Callable[..., Any]) -> int:
    return len(inspect.signature(function).parameters)


class Resources:
    """The resources open for a worker or job: `use(r)` is what `r` yielded."""

    __slots__ = ("_declared", "_user", "_values")

    def __init__(
        self,
        values: Mapping[str, object] | None = None,
        *,
        user: str | None = None,
        declared: Iterable[str] = (),
    ) -> None:
        self._values = dict(values or {})
        self._user = user
        self._declared = frozenset(declared)

    @overload
    def use(self, resource: Resource[T]) -> T: ...
    @overload
    def use(self, resource: str) -> Any: ...
    def use(self, resource: Resource[Any] | str) -> Any:
        name = resource if isinstance(resource, str) else resource.name
        try:
            return self._values[name]
        except KeyError:
            if self._user is not None and name not in self._declared:
                message = f"{self._user} did not declare resource {name!r}: add it to uses=[...]"
                raise LookupError(message) from None
            raise LookupError(f"resource {name!r} is not open here") from None

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def only(self, names: Iterable[str], *, user: str) -> Resources:
        """The subset `user` (a worker, a job type) declared: it cannot use anything else."""
        declared = tuple(names)
        return Resources(
            {name: self._values[name] for name in declared if name in self._values},
            user=user,
            declared=declared,
        )


@dataclass(frozen=True, slots=True)
class Provided(Generic[T]):
    """A resource's value handed in directly (a test's fake), instead of opened."""

    resource: Resource[T]
    value: T


def provide(resource: Resource[T], value: T) -> Provided[T]:
    """Use `value` as `resource` (type-checked against what the resource yields)."""
    return Provided(resource, value)


class ResourceFailed(Exception):
    """A resource could not be opened; `error` says why, for the operator."""

    def __init__(self, name: str, error: BaseException) -> None:
        self.name = name
        self.error = error
        super().__init__(f"resource {name!r} failed to open: {describe_error(error)}")


def describe_error(error: BaseException) -> str:
    """One line for an operator: the message alone if the error's type says nothing more."""
    text = str(error)
    if type(error).__module__.startswith("service.") and text:
        return text  # our own errors are written for operators
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@asynccontextmanager
async def open_resources(
    order: Sequence[Resource[Any]], settings: Mapping[str, BaseModel]
) -> AsyncIterator[Resources]:
    """Open `order` one after another (each after what it uses), close them in reverse."""
    values: dict[str, object] = {}
    async with AsyncExitStack() as stack:
        for item in order:
            opened = Resources(values).only(item.uses, user=f"resource {item.name!r}")
            try:
                values[item.name] = await stack.enter_async_context(
                    item.open(settings[item.name], opened)
                )
            except Exception as exc:  # any failure to open is reported as such
                raise ResourceFailed(item.name, sole(exc)) from exc
        yield Resources(values)
