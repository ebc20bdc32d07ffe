"""From configuration to the workers to run: `SERVICE_WORKERS` names -> specs, in start order.

A bare name is a built-in (`service.workers.<name>:<name>`); `pkg.module:attr` imports any
module. Every problem (an unknown name, a bad reference, a missing or circular requirement, an
invalid settings section) is a configuration error reported before anything starts.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import service.workers
from service.config import ConfigError, RawConfig, Settings, validate_section
from service.worker import AnyWorkerSpec, ConfiguredWorker, WorkerSpec

_REFERENCE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*\Z")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Validated settings and the selected workers in start order (`requires` first)."""

    settings: Settings
    workers: tuple[ConfiguredWorker, ...]

    def as_json(self) -> dict[str, Any]:
        """The effective configuration with secrets masked, for `check-config`."""
        document = self.settings.model_dump(mode="json")
        document["workers"] = [item.spec.name for item in self.workers]
        for item in self.workers:
            section = item.settings.model_dump(mode="json")
            if section:
                document[item.spec.name] = section
        return document


def load(environ: Mapping[str, str], config_file: Path | None = None) -> ServiceConfig:
    """Read, validate and resolve everything, or raise one `ConfigError` listing each problem."""
    raw = RawConfig.load(environ, config_file)
    problems: list[str] = []
    try:
        settings = validate_section(raw, Settings)
    except ConfigError as exc:
        raise ConfigError([*exc.problems, *_unknown_sections(raw, set())]) from None
    names = settings.workers if settings.workers is not None else service.workers.DEFAULT_WORKERS
    specs: list[AnyWorkerSpec] = []
    for name in names:
        try:
            specs.append(resolve(name))
        except ConfigError as exc:
            problems.extend(exc.problems)
    try:
        ordered = start_order(specs)
    except ConfigError as exc:
        problems.extend(exc.problems)
        ordered = specs
    configured = []
    for spec in ordered:
        try:
            configured.append(
                ConfiguredWorker(spec, validate_section(raw, spec.settings, (spec.name,)))
            )
        except ConfigError as exc:
            problems.extend(exc.problems)
    problems.extend(_unknown_sections(raw, {spec.name for spec in specs}))
    if problems:
        raise ConfigError(problems)
    return ServiceConfig(settings, tuple(configured))


def builtin_names() -> list[str]:
    """The built-in workers, found without importing them."""
    return sorted(
        module.name
        for module in pkgutil.iter_modules(service.workers.__path__)
        if not module.name.startswith("_")
    )


def resolve(name: str) -> AnyWorkerSpec:
    """One `SERVICE_WORKERS` entry to its spec."""
    if ":" not in name:
        if name not in builtin_names():
            known = ", ".join(builtin_names()) or "none"
            raise ConfigError(
                [
                    f"SERVICE_WORKERS: unknown worker {name!r} (built-in: {known}; "
                    "or give module:attr)"
                ]
            )
        reference = f"{service.workers.__name__}.{name}:{name}"
    elif _REFERENCE.match(name):
        reference = name
    else:
        raise ConfigError([f"SERVICE_WORKERS: {name!r} is not a module:attr reference"])
    module_name, attr = reference.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001  # any import failure is the reference's problem
        raise ConfigError(
            [
                f"SERVICE_WORKERS: cannot import {module_name!r} for {name!r}: "
                f"{type(exc).__name__}: {exc}"
            ]
        ) from None
    found = getattr(module, attr, None)
    if found is None:
        raise ConfigError([f"SERVICE_WORKERS: module {module_name!r} has no attribute {attr!r}"])
    if not isinstance(found, WorkerSpec):
        raise ConfigError(
            [f"SERVICE_WORKERS: {reference} is not a worker (decorate it with @worker(...))"]
        )
    return found


def start_order(specs: list[AnyWorkerSpec]) -> list[AnyWorkerSpec]:
    """Listed order, except that a worker comes after everything it `requires`."""
    problems = []
    by_name: dict[str, AnyWorkerSpec] = {}
    for spec in specs:
        if spec.name in by_name:
            problems.append(f"SERVICE_WORKERS: worker {spec.name!r} is listed twice")
        by_name[spec.name] = spec
    for spec in by_name.values():
        problems.extend(
            f"SERVICE_WORKERS: {spec.name!r} requires {needed!r}, which is not selected"
            for needed in spec.requires
            if needed not in by_name
        )
    if problems:
        raise ConfigError(problems)
    ordered: list[AnyWorkerSpec] = []
    placed: set[str] = set()
    while len(ordered) < len(by_name):
        ready = [
            spec
            for spec in by_name.values()
            if spec.name not in placed and placed.issuperset(spec.requires)
        ]
        if not ready:
            cycle = sorted(set(by_name) - placed)
            raise ConfigError([f"SERVICE_WORKERS: circular requires among {', '.join(cycle)}"])
        ordered.append(ready[0])
        placed.add(ready[0].name)
    return ordered


def _unknown_sections(raw: RawConfig, selected: set[str]) -> list[str]:
    known = set(Settings.model_fields) | selected | set(builtin_names())
    return [f"{raw.name_of((key,))}: unknown setting" for key in raw.values if key not in known]
