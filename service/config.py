"""Typed settings from `SERVICE_*` environment variables and an optional TOML file.

The environment wins over the file, key by key. `SERVICE_TICKER__INTERVAL=5` and `[ticker]
interval = 5` name the same setting. Every problem is reported at once, one line each, naming
the variable or file key it came from and never echoing the value (it may be a secret).

Worker and resource settings are not listed here: each declares its own section as a pydantic
model (`@worker(settings=...)`, `@resource(settings=...)`), so adding one never means editing
this module. A list setting reads from the environment as comma-separated values
(`SERVICE_WEATHER__STATIONS=EGLL,LFPG`) or as a JSON array.
"""

from __future__ import annotations

import contextlib
import json
import tomllib
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

ENV_PREFIX = "SERVICE_"
CONFIG_FILE_VARIABLE = "SERVICE_CONFIG"

Key = tuple[str, ...]

ModelT = TypeVar("ModelT", bound=BaseModel)


class ConfigError(Exception):
    """Invalid or unknown configuration; each entry of `problems` is one line for the operator."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class NoSettings(BaseModel):
    """The settings section of a worker or resource that declares none: any key is a mistake."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Settings(BaseModel):
    """The service's own settings; worker sections are validated by the workers' own models."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workers: tuple[str, ...] | None = Field(
        default=None,
        description="worker names or module:attr references; None = WORKERS in service/app.py",
    )
    log_format: Literal["json", "console"] | None = Field(
        default=None, description="None: console on a terminal, JSON lines otherwise"
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    shutdown_timeout: float = Field(
        default=25.0,
        gt=0,
        allow_inf_nan=False,
        description="seconds from the first signal to the forced exit",
    )
    ops_host: str = Field(default="127.0.0.1", description="where the ops HTTP server listens")
    ops_port: int = Field(default=8080, ge=0, le=65535, description="0: any free port")
    ops_debug_token: SecretStr | None = Field(
        default=None, description="lets non-loopback clients read /debug/* with a bearer token"
    )

    @field_validator("workers", mode="before")
    @classmethod
    def _split_worker_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


@dataclass(frozen=True)
class RawConfig:
    """Configuration as read, before validation: nested values and where each one came from."""

    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[Key, str] = field(default_factory=dict)
    #: What could not be read; kept, not raised, so validation can report its problems too.
    problems: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, environ: Mapping[str, str], config_file: Path | None = None) -> RawConfig:
        """Read the TOML file (`config_file`, else `$SERVICE_CONFIG`), then overlay the env."""
        raw = cls()
        path = config_file or (
            Path(environ[CONFIG_FILE_VARIABLE]) if environ.get(CONFIG_FILE_VARIABLE) else None
        )
        if path is not None:
            raw._merge_file(path, raw.problems)
        for name in sorted(environ):
            if name.startswith(ENV_PREFIX) and name != CONFIG_FILE_VARIABLE:
                raw._merge_env(name, environ[name], raw.problems)
        return raw

    def _merge_file(self, path: Path, problems: list[str]) -> None:
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            problems.append(f"{path}: cannot read config file: {exc.strerror or exc}")
            return
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: not valid TOML: {exc}")
            return

        def walk(table: Mapping[str, Any], prefix: Key) -> None:
            for key, value in table.items():
                if isinstance(value, dict):
                    walk(value, (*prefix, key))
                else:
                    self._set(
                        (*prefix, key), value, f"{path}: {'.'.join((*prefix, key))}", problems
                    )

        walk(document, ())

    def _merge_env(self, name: str, value: str, problems: list[str]) -> None:
        key = tuple(name[len(ENV_PREFIX) :].lower().split("__"))
        if not all(key):
            problems.append(f"{name}: malformed name (use SERVICE_SECTION__KEY)")
            return
        self._set(key, value, name, problems)

    def _set(self, key: Key, value: object, origin: str, problems: list[str]) -> None:
        table = self.values
        for depth, part in enumerate(key[:-1]):
            existing = table.setdefault(part, {})
            if not isinstance(existing, dict):
                other = self.origins.get(key[: depth + 1], ".".join(key[: depth + 1]))
                problems.append(f"{origin}: conflicts with {other}, which is not a section")
                return
            table = existing
        if isinstance(table.get(key[-1]), dict):
            problems.append(f"{origin}: names a section, not a setting")
            return
        table[key[-1]] = value
        self.origins[key] = origin

    def name_of(self, key: Key) -> str:
        """The variable or file key a setting (or section) came from; its env name if absent."""
        for end in range(len(key), 0, -1):
            if key[:end] in self.origins:
                return self.origins[key[:end]]
        inside = [origin for known, origin in self.origins.items() if known[: len(key)] == key]
        if inside:
            return inside[0]
        return ENV_PREFIX + "__".join(key).upper()


def validate_section(raw: RawConfig, model: type[ModelT], section: Key = ()) -> ModelT:
    """Validate one section (the top level when `section` is empty) against its model.

    Keys the model does not know are errors even if the model itself would ignore them: a
    misspelt setting must never silently fall back to its default.
    """
    values: Any = raw.values
    for part in section:
        values = values.get(part, {}) if isinstance(values, dict) else values
    known = _field_names(model)
    if section == ():
        values = {key: value for key, value in values.items() if key in known}
    if isinstance(values, dict):
        values = _split_env_lists(raw, model, section, values)
    # A scalar where the section should be is left to pydantic ("a valid dictionary").
    unknown = [
        f"{raw.name_of((*section, key))}: unknown setting"
        for key in (values if isinstance(values, dict) else ())
        if key not in known
    ]
    try:
        validated = model.model_validate(values)
    except ValidationError as exc:
        raise ConfigError([*_describe(raw, exc, section), *unknown]) from None
    if unknown:
        raise ConfigError(unknown)
    return validated


_SEQUENCES = (list, tuple, set, frozenset)


def _split_env_lists(
    raw: RawConfig, model: type[BaseModel], section: Key, values: dict[str, Any]
) -> dict[str, Any]:
    """`A,B` from an environment variable, for a list setting, is `["A", "B"]`.

    An operator writes a list in one variable as comma-separated values, or as a JSON array
    (a value that starts with `[`) when an item holds a comma.
    """
    split = dict(values)
    for name, spec in model.model_fields.items():
        key = spec.alias or name
        value = values.get(key)
        from_env = raw.origins.get((*section, key), "").startswith(ENV_PREFIX)
        if not (from_env and isinstance(value, str) and _is_sequence(spec.annotation)):
            continue
        if value.lstrip().startswith("["):
            with contextlib.suppress(json.JSONDecodeError):  # else: "should be a valid list"
                split[key] = json.loads(value)
        else:
            split[key] = [part.strip() for part in value.split(",") if part.strip()]
    return split


def _is_sequence(annotation: object) -> bool:
    """A list, tuple or set type, or an optional one."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_is_sequence(arg) for arg in get_args(annotation))
    return origin in _SEQUENCES or annotation in _SEQUENCES


def _field_names(model: type[BaseModel]) -> set[str]:
    names = set(model.model_fields)
    names.update(f.alias for f in model.model_fields.values() if f.alias is not None)
    return names


def _describe(raw: RawConfig, error: ValidationError, section: Key) -> list[str]:
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        key = (*section, *(str(part) for part in item["loc"]))
        if item["type"] == "extra_forbidden":
            if len(item["loc"]) == 1:
                continue  # the section's own unknown keys are reported by validate_section
            problems.append(f"{raw.name_of(key)}: unknown setting")
        else:
            problems.append(f"{raw.name_of(key)}: {item['msg']}")
    return problems
