"""From `SERVICE_WORKERS` to worker specs: resolution, problems, start order, worker settings."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import service.app
import service.workers
from service import registry
from service.config import ConfigError
from service.worker import AnyWorkerSpec, WorkerSpec

SECRET = "hunter2-S3CR3T-do-not-print"

WORKERS = """\
import trio
from pydantic import BaseModel, ConfigDict, SecretStr

from service import WorkerContext, worker


async def body(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()


class StrictSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interval: float = 1.0
    token: SecretStr = SecretStr("")


class RequiredSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str


class PlainSettings(BaseModel):
    interval: float = 1.0


alpha = worker(name="alpha")(body)
beta = worker(name="beta", requires=("alpha",))(body)
gamma = worker(name="gamma")(body)
delta = worker(name="delta")(body)
loop_a = worker(name="loop_a", requires=("loop_b",))(body)
loop_b = worker(name="loop_b", requires=("loop_a",))(body)
alpha_again = worker(name="alpha")(body)
strict = worker(name="strict", settings=StrictSettings)(body)
needs_url = worker(name="needs_url", settings=RequiredSettings)(body)
plain = worker(name="plain", settings=PlainSettings)(body)
renamed = worker(name="custom_name")(body)


@worker()
async def decorated(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()


async def undecorated(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()


not_a_function = 42
"""

ModuleMaker = Callable[..., str]


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleMaker]:
    """Writes a module (or `package.module`) under a fresh unique name importable from sys.path."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created: list[str] = []

    def make(source: str = WORKERS, *, package: bool = False) -> str:
        name = f"tmp_workers_{uuid.uuid4().hex}"
        if package:
            (tmp_path / name).mkdir()
            (tmp_path / name / "__init__.py").write_text("", encoding="utf-8")
            (tmp_path / name / "mod.py").write_text(source, encoding="utf-8")
            name = f"{name}.mod"
        else:
            (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
        created.append(name.split(".")[0])
        return name

    yield make
    for top in created:
        for module in [m for m in sys.modules if m == top or m.startswith(f"{top}.")]:
            del sys.modules[module]


@pytest.fixture
def builtin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleMaker]:
    """Adds a module to `service.workers` (a built-in) holding a worker of the module's name."""
    package_dir = tmp_path / "builtins"
    package_dir.mkdir()
    monkeypatch.setattr(service.workers, "__path__", [*service.workers.__path__, str(package_dir)])
    created: list[str] = []

    def make(source: str | None = None, *, name: str | None = None) -> str:
        name = name or f"builtin_{uuid.uuid4().hex[:12]}"
        if source is None:
            source = WORKERS + f"\n{name} = worker(name={name!r})(body)\n"
        (package_dir / f"{name}.py").write_text(source, encoding="utf-8")
        created.append(name)
        return name

    yield make
    for name in created:
        sys.modules.pop(f"{service.workers.__name__}.{name}", None)
        if hasattr(service.workers, name):
            delattr(service.workers, name)


def problems_of(action: Callable[[], object]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        action()
    return caught.value.problems


def names(specs: list[AnyWorkerSpec]) -> list[str]:
    return [spec.name for spec in specs]


# --- resolving one entry --------------------------------------------------------------------


def test_bare_name_resolves_to_the_builtin_module_of_that_name(builtin: ModuleMaker) -> None:
    name = builtin()
    spec = registry.resolve(name)
    assert spec.name == name
    assert spec is sys.modules[f"service.workers.{name}"].__dict__[name]


def test_builtins_are_listed_without_private_modules(builtin: ModuleMaker) -> None:
    public = builtin()
    builtin("", name="_helpers")
    assert public in registry.builtin_names()
    assert "_helpers" not in registry.builtin_names()
    assert f"service.workers.{public}" not in sys.modules  # listing imports nothing


def test_unknown_bare_name_lists_the_builtins(builtin: ModuleMaker) -> None:
    known = builtin()
    [problem] = problems_of(lambda: registry.resolve("tikcer"))
    assert problem.startswith("SERVICE_WORKERS: unknown worker 'tikcer'")
    assert known in problem


def test_unknown_bare_name_without_builtins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service.workers, "__path__", [str(tmp_path)])
    assert problems_of(lambda: registry.resolve("ticker")) == [
        "SERVICE_WORKERS: unknown worker 'ticker' (built-in: none; or give module:attr)"
    ]


def test_builtin_module_without_the_worker_of_its_name(builtin: ModuleMaker) -> None:
    name = builtin(WORKERS)
    [problem] = problems_of(lambda: registry.resolve(name))
    assert problem == (
        f"SERVICE_WORKERS: module 'service.workers.{name}' has no attribute {name!r}"
    )


def test_module_attr_reference_imports_any_module(make_module: ModuleMaker) -> None:
    module = make_module()
    spec = registry.resolve(f"{module}:gamma")
    assert isinstance(spec, WorkerSpec)
    assert spec is sys.modules[module].gamma
    assert spec.name == "gamma"


def test_package_module_attr_reference(make_module: ModuleMaker) -> None:
    module = make_module(package=True)
    assert "." in module
    assert registry.resolve(f"{module}:decorated").name == "decorated"


def test_worker_name_comes_from_the_decorator_not_the_attribute(
    make_module: ModuleMaker,
) -> None:
    module = make_module()
    assert registry.resolve(f"{module}:renamed").name == "custom_name"


@pytest.mark.parametrize(
    "reference",
    [
        "mod:",
        ":attr",
        "mod:attr:more",
        "mod:attr.sub",
        "mod-x:attr",
        "mod:1st",
        "mod :attr",
        "1mod:attr",
        "mod/sub:attr",
    ],
)
def test_malformed_reference(reference: str) -> None:
    assert problems_of(lambda: registry.resolve(reference)) == [
        f"SERVICE_WORKERS: {reference!r} is not a module:attr reference"
    ]


def test_module_that_does_not_exist() -> None:
    module = f"absent_{uuid.uuid4().hex}"
    [problem] = problems_of(lambda: registry.resolve(f"{module}:alpha"))
    assert problem.startswith(f"SERVICE_WORKERS: cannot import {module!r} for '{module}:alpha': ")
    assert "ModuleNotFoundError" in problem


def test_module_whose_import_fails_on_a_missing_dependency(make_module: ModuleMaker) -> None:
    dependency = f"absent_dependency_{uuid.uuid4().hex}"
    module = make_module(f"import {dependency}\n")
    [problem] = problems_of(lambda: registry.resolve(f"{module}:alpha"))
    assert problem == (
        f"SERVICE_WORKERS: cannot import {module!r} for '{module}:alpha': "
        f"ModuleNotFoundError: No module named {dependency!r}"
    )


def test_module_raising_import_error_at_import(make_module: ModuleMaker) -> None:
    module = make_module("raise ImportError('needs libfoo')\n")
    [problem] = problems_of(lambda: registry.resolve(f"{module}:alpha"))
    assert problem.endswith("ImportError: needs libfoo")


def test_module_raising_any_exception_at_import(make_module: ModuleMaker) -> None:
    module = make_module("raise RuntimeError('broken at import time')\n")
    [problem] = problems_of(lambda: registry.resolve(f"{module}:alpha"))
    assert problem == (
        f"SERVICE_WORKERS: cannot import {module!r} for '{module}:alpha': "
        "RuntimeError: broken at import time"
    )
    assert module not in sys.modules


def test_missing_attribute(make_module: ModuleMaker) -> None:
    module = make_module()
    assert problems_of(lambda: registry.resolve(f"{module}:nope")) == [
        f"SERVICE_WORKERS: module {module!r} has no attribute 'nope'"
    ]


@pytest.mark.parametrize("attr", ["undecorated", "not_a_function", "StrictSettings", "body"])
def test_attribute_that_is_not_a_worker(make_module: ModuleMaker, attr: str) -> None:
    module = make_module()
    assert problems_of(lambda: registry.resolve(f"{module}:{attr}")) == [
        f"SERVICE_WORKERS: {module}:{attr} is not a worker (decorate it with @worker(...))"
    ]


# --- start order ----------------------------------------------------------------------------


def specs_of(make_module: ModuleMaker, *attrs: str) -> list[AnyWorkerSpec]:
    module = make_module()
    return [registry.resolve(f"{module}:{attr}") for attr in attrs]


@pytest.mark.parametrize(
    "listing",
    [
        ("alpha", "gamma", "delta"),
        ("delta", "alpha", "gamma"),
        ("gamma", "delta", "alpha"),
    ],
)
def test_start_order_keeps_the_listing_order(
    make_module: ModuleMaker, listing: tuple[str, ...]
) -> None:
    assert names(registry.start_order(specs_of(make_module, *listing))) == list(listing)


def test_requirements_start_first_and_the_rest_keep_their_order(
    make_module: ModuleMaker,
) -> None:
    ordered = names(registry.start_order(specs_of(make_module, "gamma", "beta", "delta", "alpha")))
    assert sorted(ordered) == ["alpha", "beta", "delta", "gamma"]
    assert ordered.index("alpha") < ordered.index("beta")
    independent = [name for name in ordered if name != "beta"]
    assert independent == ["gamma", "delta", "alpha"]


def test_start_order_does_not_move_an_already_satisfied_worker(make_module: ModuleMaker) -> None:
    listing = ("alpha", "gamma", "beta", "delta")
    assert names(registry.start_order(specs_of(make_module, *listing))) == list(listing)


def test_duplicate_names(make_module: ModuleMaker) -> None:
    assert problems_of(
        lambda: registry.start_order(specs_of(make_module, "gamma", "alpha", "alpha_again"))
    ) == ["SERVICE_WORKERS: worker 'alpha' is listed twice"]


def test_requires_a_worker_that_is_not_selected(make_module: ModuleMaker) -> None:
    assert problems_of(lambda: registry.start_order(specs_of(make_module, "beta", "gamma"))) == [
        "SERVICE_WORKERS: 'beta' requires 'alpha', which is not selected"
    ]


def test_circular_requires(make_module: ModuleMaker) -> None:
    [problem] = problems_of(
        lambda: registry.start_order(specs_of(make_module, "gamma", "loop_a", "loop_b"))
    )
    assert problem.startswith("SERVICE_WORKERS: circular requires: ")
    assert "loop_a" in problem
    assert "loop_b" in problem
    assert "gamma" not in problem


# --- loading everything ---------------------------------------------------------------------


def test_load_resolves_orders_and_validates(make_module: ModuleMaker) -> None:
    module = make_module()
    config = registry.load(
        {"SERVICE_WORKERS": f"{module}:beta, {module}:alpha", "SERVICE_SHUTDOWN_TIMEOUT": "4"}
    )
    assert config.settings.shutdown_timeout == 4.0
    assert [item.spec.name for item in config.workers] == ["alpha", "beta"]
    assert config.workers[0].spec is sys.modules[module].alpha


def test_default_selection_is_the_manifests_workers(
    builtin: ModuleMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = builtin()
    monkeypatch.setattr(service.app, "WORKERS", [name])
    config = registry.load({})
    assert [item.spec.name for item in config.workers] == [name]


def test_worker_list_from_the_file(make_module: ModuleMaker, tmp_path: Path) -> None:
    module = make_module()
    path = tmp_path / "service.toml"
    path.write_text(f'workers = ["{module}:gamma", "{module}:delta"]\n', encoding="utf-8")
    config = registry.load({}, path)
    assert [item.spec.name for item in config.workers] == ["gamma", "delta"]


def test_worker_settings_from_the_environment(make_module: ModuleMaker) -> None:
    module = make_module()
    config = registry.load(
        {"SERVICE_WORKERS": f"{module}:strict", "SERVICE_STRICT__INTERVAL": "2.5"}
    )
    [configured] = config.workers
    assert configured.settings.interval == 2.5  # type: ignore[attr-defined]
    assert type(configured.settings).__name__ == "StrictSettings"


def test_worker_settings_from_the_file_with_the_environment_on_top(
    make_module: ModuleMaker, tmp_path: Path
) -> None:
    module = make_module()
    path = tmp_path / "service.toml"
    path.write_text('[strict]\ninterval = 9\ntoken = "from-file"\n', encoding="utf-8")
    config = registry.load(
        {"SERVICE_WORKERS": f"{module}:strict", "SERVICE_STRICT__INTERVAL": "3"}, path
    )
    settings = config.workers[0].settings
    assert settings.interval == 3.0  # type: ignore[attr-defined]
    assert settings.token.get_secret_value() == "from-file"  # type: ignore[attr-defined]


def test_worker_settings_defaults(make_module: ModuleMaker) -> None:
    module = make_module()
    config = registry.load({"SERVICE_WORKERS": f"{module}:strict"})
    assert config.workers[0].settings.interval == 1.0  # type: ignore[attr-defined]


def test_invalid_worker_setting_names_its_variable_without_the_value(
    make_module: ModuleMaker,
) -> None:
    module = make_module()
    problems = problems_of(
        lambda: registry.load(
            {"SERVICE_WORKERS": f"{module}:strict", "SERVICE_STRICT__INTERVAL": SECRET}
        )
    )
    assert problems == [
        "SERVICE_STRICT__INTERVAL: Input should be a valid number, unable to parse string as a "
        "number"
    ]


def test_missing_required_worker_setting(make_module: ModuleMaker) -> None:
    module = make_module()
    assert problems_of(lambda: registry.load({"SERVICE_WORKERS": f"{module}:needs_url"})) == [
        "SERVICE_NEEDS_URL__URL: Field required"
    ]


def test_unknown_key_in_the_section_of_a_worker_without_settings(
    make_module: ModuleMaker,
) -> None:
    module = make_module()
    problems = problems_of(
        lambda: registry.load({"SERVICE_WORKERS": f"{module}:gamma", "SERVICE_GAMMA__NOPE": "1"})
    )
    assert problems == ["SERVICE_GAMMA__NOPE: unknown setting"]


@pytest.mark.parametrize("attr", ["strict", "plain"])
def test_unknown_key_in_a_worker_settings_section(make_module: ModuleMaker, attr: str) -> None:
    """Unknown input is rejected whether or not the worker's model forbids extra keys itself."""
    module = make_module()
    variable = f"SERVICE_{attr.upper()}__INTERVALL"
    problems = problems_of(
        lambda: registry.load({"SERVICE_WORKERS": f"{module}:{attr}", variable: "5"})
    )
    assert problems == [f"{variable}: unknown setting"]


def test_unknown_top_level_setting() -> None:
    assert problems_of(lambda: registry.load({"SERVICE_NOPE": SECRET})) == [
        "SERVICE_NOPE: unknown setting"
    ]


def test_unknown_section_from_the_environment(make_module: ModuleMaker) -> None:
    module = make_module()
    [problem] = problems_of(
        lambda: registry.load(
            {"SERVICE_WORKERS": f"{module}:gamma", "SERVICE_GAMMMA__INTERVAL": "1"}
        )
    )
    assert problem.startswith("SERVICE_GAMMMA")
    assert problem.endswith(": unknown setting")


def test_unknown_section_from_the_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "service.toml"
    path.write_text("[tiker]\ninterval = 1\n", encoding="utf-8")
    [problem] = problems_of(lambda: registry.load({}, path))
    assert problem.startswith(f"{path}: tiker")
    assert problem.endswith(": unknown setting")


def test_unknown_top_level_key_from_the_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "service.toml"
    path.write_text("shutdown_timout = 5\n", encoding="utf-8")
    assert problems_of(lambda: registry.load({}, path)) == [
        f"{path}: shutdown_timout: unknown setting"
    ]


def test_every_worker_problem_is_reported_at_once(make_module: ModuleMaker) -> None:
    module = make_module()
    problems = problems_of(
        lambda: registry.load(
            {
                "SERVICE_WORKERS": f"nope, {module}:, {module}:beta, {module}:strict",
                "SERVICE_STRICT__INTERVAL": "soon",
                "SERVICE_NOPE": "1",
            }
        )
    )
    assert len(problems) == 5
    assert any("unknown worker 'nope'" in p for p in problems)
    assert any("is not a module:attr reference" in p for p in problems)
    assert any("'beta' requires 'alpha'" in p for p in problems)
    assert any(p.startswith("SERVICE_STRICT__INTERVAL: ") for p in problems)
    assert "SERVICE_NOPE: unknown setting" in problems


def test_service_and_worker_problems_are_reported_together(make_module: ModuleMaker) -> None:
    module = make_module()
    problems = problems_of(
        lambda: registry.load(
            {
                "SERVICE_SHUTDOWN_TIMEOUT": "0",
                "SERVICE_WORKERS": f"{module}:strict, nope",
                "SERVICE_STRICT__INTERVAL": "2",  # valid: the selected worker's own section
            }
        )
    )
    assert sorted(problem.split(" (built-in")[0] for problem in problems) == [
        "SERVICE_SHUTDOWN_TIMEOUT: Input should be greater than 0",
        "SERVICE_WORKERS: unknown worker 'nope'",
    ]


def test_reading_and_validation_problems_are_reported_together() -> None:
    problems = problems_of(
        lambda: registry.load({"SERVICE_A____B": "1", "SERVICE_SHUTDOWN_TIMEOUT": "0"})
    )
    assert sorted(problems) == [
        "SERVICE_A____B: malformed name (use SERVICE_SECTION__KEY)",
        "SERVICE_SHUTDOWN_TIMEOUT: Input should be greater than 0",
    ]


# --- the effective configuration ------------------------------------------------------------


def test_as_json_lists_settings_workers_and_sections(make_module: ModuleMaker) -> None:
    module = make_module()
    config = registry.load(
        {
            "SERVICE_WORKERS": f"{module}:gamma,{module}:strict",
            "SERVICE_LOG_LEVEL": "WARNING",
            "SERVICE_STRICT__INTERVAL": "2",
        }
    )
    document = config.as_json()
    expected = {
        "workers": ["gamma", "strict"],
        "log_format": None,
        "log_level": "warning",
        "shutdown_timeout": 25.0,
        "strict": {"interval": 2.0, "token": ""},
    }
    assert {key: document[key] for key in expected} == expected


def test_as_json_masks_secrets(make_module: ModuleMaker) -> None:
    module = make_module()
    config = registry.load({"SERVICE_WORKERS": f"{module}:strict", "SERVICE_STRICT__TOKEN": SECRET})
    assert config.workers[0].settings.token.get_secret_value() == SECRET  # type: ignore[attr-defined]
    document = config.as_json()
    assert document["strict"]["token"] == "**********"
    assert SECRET not in json.dumps(document)
