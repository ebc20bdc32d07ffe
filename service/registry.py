"""From configuration to what runs: the workers in start order and the resources they use.

It imports the project's manifest (`service.app`) first, so every resource and job type of the
project is declared. A bare worker name is `service.workers.<name>:<name>`; `pkg.module:attr`
imports any module. Every problem (an unknown name, a bad reference, a missing or circular
requirement or use, an invalid settings section) is a configuration error reported before
anything starts.
"""

from __future__ import annotations

import graphlib
import importlib
import pkgutil
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import service.workers
from service import jobs, resources
from service.config import ConfigError, RawConfig, Settings, validate_section
from service.resources import Resource
from service.worker import AnyWorkerSpec, ConfiguredWorker, WorkerSpec

#: The project's manifest: its modules, and the workers that run by default.
MANIFEST = "service.app"

_REFERENCE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*\Z")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Validated settings and the selected workers in start order (`requires` first)."""

    settings: Settings
    workers: tuple[ConfiguredWorker, ...]
    #: The resources the workers use, in the order they open (each after what it uses).
    resources: tuple[Resource[Any], ...] = ()
    #: Every declared resource's validated settings section, by name.
    resource_settings: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The effective configuration with secrets masked, for `check-config`."""
        document = self.settings.model_dump(mode="json")
        document["workers"] = [item.spec.name for item in self.workers]
        sections = [(item.spec.name, item.settings) for item in self.workers]
        sections.extend(self.resource_settings.items())
        for name, settings in sections:
            section = settings.model_dump(mode="json")
            if section:
                document[name] = section
        return document


def load(environ: Mapping[str, str], config_file: Path | None = None) -> ServiceConfig:
    """Read, validate and resolve everything, or raise one `ConfigError` listing each problem."""
    manifest = import_manifest()
    raw = RawConfig.load(environ, config_file)
    problems = list(raw.problems)
    try:
        settings: Settings | None = validate_section(raw, Settings)
    except ConfigError as exc:
        problems.extend(exc.problems)
        settings = None
    source = raw.name_of(("workers",))
    specs: list[AnyWorkerSpec] = []
    for name in _worker_names(raw, settings, manifest):
        try:
            specs.append(resolve(name, source))
        except ConfigError as exc:
            problems.extend(exc.problems)
    try:
        ordered = start_order(specs, source)
    except ConfigError as exc:
        problems.extend(exc.problems)
        ordered = specs
    configured = []
    for spec in ordered:
        try:
            settings_section = validate_section(raw, spec.settings, (spec.name,))
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        configured.append(ConfiguredWorker(spec, settings_section))
        problems.extend(spec.problems_with(settings_section))
    resource_settings: dict[str, Any] = {}
    for declared in resources.REGISTERED.values():
        try:
            resource_settings[declared.name] = validate_section(
                raw, declared.settings, (declared.name,)
            )
        except ConfigError as exc:
            problems.extend(exc.problems)
    try:
        order = resource_order({f"worker {spec.name!r}": spec.needs() for spec in ordered})
    except ConfigError as exc:
        problems.extend(exc.problems)
        order = []
    problems.extend(_clashing_names({spec.name for spec in specs}))
    problems.extend(_unknown_sections(raw, {spec.name for spec in specs}))
    if problems or settings is None:
        raise ConfigError(problems)
    return ServiceConfig(settings, tuple(configured), tuple(order), resource_settings)


def import_manifest() -> ModuleType | None:
    """`service.app`, imported; None if the project has none. Its own errors are the project's
    problem to see whole: they propagate with their traceback."""
    try:
        return importlib.import_module(MANIFEST)
    except ModuleNotFoundError as exc:
        if exc.name != MANIFEST:
            raise
        return None


def _worker_names(
    raw: RawConfig, settings: Settings | None, manifest: ModuleType | None
) -> tuple[str, ...]:
    """The selected names, even when another service setting is invalid (to report all)."""
    if settings is None:
        try:
            settings = Settings.model_validate({"workers": raw.values.get("workers")})
        except ValueError:
            return ()  # the list itself is invalid, and already reported
    if settings.workers is None:
        return tuple(getattr(manifest, "WORKERS", ()))
    return settings.workers


def resource_order(needs: Mapping[str, Iterable[str]]) -> list[Resource[Any]]:
    """The resources that `needs` (user -> names) reach, each after the ones it uses.

    Every declared resource's and job type's own uses are checked too, used or not: a replica
    that runs them must not be the first to find a misspelt name.
    """
    declared = resources.REGISTERED
    users = {
        **{f"resource {name!r}": item.uses for name, item in declared.items()},
        **{f"job {name!r}": item.uses for name, item in jobs.REGISTERED.items()},
        **needs,
    }
    problems = [
        f"{user} uses unknown resource {name!r} (declared: {', '.join(declared) or 'none'})"
        for user, names in users.items()
        for name in names
        if name not in declared
    ]
    if problems:
        raise ConfigError(problems)
    wanted: list[str] = []
    pending = [name for names in needs.values() for name in names]
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.append(name)
            pending.extend(declared[name].uses)
    try:
        graph = {name: declared[name].uses for name in declared}
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        cycle = " -> ".join(reversed(exc.args[1]))
        raise ConfigError([f"circular uses among resources: {cycle}"]) from None
    ordered = graphlib.TopologicalSorter({name: declared[name].uses for name in wanted})
    return [declared[name] for name in ordered.static_order()]


def builtin_names() -> list[str]:
    """The built-in workers, found without importing them."""
    return sorted(
        module.name
        for module in pkgutil.iter_modules(service.workers.__path__)
        if not module.name.startswith("_")
    )


def resolve(name: str, source: str = "SERVICE_WORKERS") -> AnyWorkerSpec:
    """One `SERVICE_WORKERS` entry to its spec; `source` names where the list came from."""
    if ":" not in name:
        if name not in builtin_names():
            known = ", ".join(builtin_names()) or "none"
            raise ConfigError(
                [f"{source}: unknown worker {name!r} (built-in: {known}; or give module:attr)"]
            )
        reference = f"{service.workers.__name__}.{name}:{name}"
    elif _REFERENCE.match(name):
        reference = name
    else:
        raise ConfigError([f"{source}: {name!r} is not a module:attr reference"])
    module_name, attr = reference.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001  # any import failure is the reference's problem
        raise ConfigError(
            [f"{source}: cannot import {module_name!r} for {name!r}: {type(exc).__name__}: {exc}"]
        ) from None
    found = getattr(module, attr, None)
    if found is None:
        raise ConfigError([f"{source}: module {module_name!r} has no attribute {attr!r}"])
    if not isinstance(found, WorkerSpec):
        raise ConfigError(
            [f"{source}: {reference} is not a worker (decorate it with @worker(...))"]
        )
    return found


def start_order(specs: list[AnyWorkerSpec], source: str = "SERVICE_WORKERS") -> list[AnyWorkerSpec]:
    """Listed order, except that a worker comes after everything it `requires`."""
    problems = []
    by_name: dict[str, AnyWorkerSpec] = {}
    for spec in specs:
        if spec.name in by_name:
            problems.append(f"{source}: worker {spec.name!r} is listed twice")
        by_name[spec.name] = spec
    for spec in by_name.values():
        problems.extend(
            f"{source}: {spec.name!r} requires {needed!r}, which is not selected"
            for needed in spec.requires
            if needed not in by_name
        )
    if problems:
        raise ConfigError(problems)
    try:
        graphlib.TopologicalSorter({s.name: s.requires for s in by_name.values()}).prepare()
    except graphlib.CycleError as exc:
        cycle = " -> ".join(reversed(exc.args[1]))
        raise ConfigError([f"{source}: circular requires: {cycle}"]) from None
    ordered: list[AnyWorkerSpec] = []
    placed: set[str] = set()
    while len(ordered) < len(by_name):
        # The first listed worker whose requirements have all been placed; the graph is
        # acyclic, so there always is one.
        ready = next(
            spec
            for spec in by_name.values()
            if spec.name not in placed and placed.issuperset(spec.requires)
        )
        ordered.append(ready)
        placed.add(ready.name)
    return ordered


def _clashing_names(selected: set[str]) -> list[str]:
    """A worker and a resource of one name would share one settings section."""
    return [
        f"worker {name!r} and resource {name!r} share a name (and so a settings section)"
        for name in sorted(selected & set(resources.REGISTERED))
    ]


def _unknown_sections(raw: RawConfig, selected: set[str]) -> list[str]:
    known = set(Settings.model_fields) | selected | set(builtin_names())
    known.update(resources.REGISTERED)
    return [f"{raw.name_of((key,))}: unknown setting" for key in raw.values if key not in known]
