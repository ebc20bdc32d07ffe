"""`./scripts/new-worker`: the names it refuses and why, the modules it writes, their tests.

Most tests run the scaffolder on a project of its own in `tmp_path`: a copy of
`scripts/new_worker/` and `pyproject.toml`, with empty `service/workers/` and `tests/`. One
copies this checkout's `service` package and test configuration too, and runs each kind's
written test there, in a pytest of its own. That the written module passes mypy inside a
generated project, and runs there, is the template's tests' part (tests/template/).

The shapes are what users copy: they import nothing of `service` but its public face.
"""

from __future__ import annotations

import ast
import os
import runpy
import shutil
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

from service import JobType, Resource, WorkerSpec

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ROOT / "scripts" / "new_worker"
KINDS = ["ticker", "consumer", "poller", "resource", "job"]
WORKER_KINDS = ["ticker", "consumer", "poller"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "scripts" / "new_worker", tmp_path / "scripts" / "new_worker")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "service" / "workers").mkdir(parents=True)
    (tmp_path / "tests").mkdir()
    return tmp_path


@pytest.fixture
def registries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resources and job types a test declares stay its own (declaring one registers it)."""
    for name in ("service.resources.resource", "service.jobs.job"):
        module = import_module(name)
        monkeypatch.setattr(module, "REGISTERED", dict(module.REGISTERED))


def new_worker(
    project: Path, *args: str, service_from: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    # A `service` package, for the settings the name must not collide with.
    env = {**os.environ, "PYTHONPATH": str(service_from)}
    return subprocess.run(
        [sys.executable, str(project / "scripts" / "new_worker"), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def written(project: Path) -> list[str]:
    return sorted(
        str(path.relative_to(project))
        for directory in ("service/workers", "tests")
        for path in (project / directory).iterdir()
    )


@pytest.mark.parametrize(
    ("name", "kind", "reason"),
    [
        ("Reporter", "ticker", "a name is lowercase letters, digits and _"),
        ("2fast", "resource", "a name is lowercase letters, digits and _"),
        ("order-feed", "consumer", "a name is lowercase letters, digits and _"),
        ("x" * 41, "ticker", "longer than 40 characters"),
        ("class", "ticker", "it is a Python keyword"),
        ("match", "poller", "it is a Python keyword"),
        ("list", "ticker", "it is a Python built-in"),
        ("db", "poller", "SERVICE_DB is a setting of the service itself"),
        ("db", "resource", "SERVICE_DB is a setting of the service itself"),
        ("echo", "job", "a job type of that name exists"),
        ("job", "job", "the shape already uses that name in service/workers/job.py"),
        ("resource", "resource", "the shape already uses that name in service/workers/resource.py"),
        ("config", "ticker", "SERVICE_CONFIG is a setting of the service itself"),
        ("service", "ticker", "it is a package of this project"),
        ("fetch", "poller", "the shape already uses that name in service/workers/fetch.py"),
        ("trio", "ticker", "the shape already uses that name in service/workers/trio.py"),
        ("pytest", "poller", "the shape already uses that name in tests/test_worker_pytest.py"),
    ],
)
def test_a_name_the_worker_could_not_be_run_by_is_refused_with_the_reason(
    project: Path, name: str, kind: str, reason: str
) -> None:
    refused = new_worker(project, name, "--kind", kind)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"new-worker: cannot use {name!r}: {reason}")
    assert written(project) == []


@pytest.mark.parametrize("taken", ["service/workers/reporter.py", "tests/test_worker_reporter.py"])
def test_an_existing_file_is_never_overwritten(project: Path, taken: str) -> None:
    (project / taken).write_text("# mine\n")
    refused = new_worker(project, "reporter", "--kind", "ticker")
    assert refused.returncode == 2
    assert refused.stderr == f"new-worker: cannot use 'reporter': {taken} exists\n"
    assert written(project) == [taken]
    assert (project / taken).read_text() == "# mine\n"


@pytest.mark.parametrize("args", [["reporter"], ["reporter", "--kind", "cron"]])
def test_the_kind_is_required_and_must_be_one_it_knows(project: Path, args: list[str]) -> None:
    refused = new_worker(project, *args)
    assert refused.returncode == 2
    assert "--kind" in refused.stderr
    assert written(project) == []


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.usefixtures("registries")
def test_each_kind_writes_a_module_of_that_name_and_its_test(project: Path, kind: str) -> None:
    done = new_worker(project, "order_sync", "--kind", kind)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:4] == [
        "wrote service/workers/order_sync.py",
        "wrote tests/test_worker_order_sync.py",
        "import it in service/app.py, so that every process knows it:",
        "    from service.workers import order_sync  # noqa: F401",
    ]
    assert any("to WORKERS" in line for line in lines[4:]) == (kind in WORKER_KINDS)
    module = project / "service" / "workers" / "order_sync.py"
    test = project / "tests" / "test_worker_order_sync.py"
    for path in (module, test):
        text = path.read_text()
        assert "my_worker" not in text
        assert "MyWorker" not in text
        assert "MY_WORKER" not in text
    declared = runpy.run_path(str(module))["order_sync"]
    assert declared.name == "order_sync"
    if kind == "job":
        assert isinstance(declared, JobType)
        assert declared.payload.__name__ == "OrderSyncPayload"
    else:
        assert isinstance(declared, WorkerSpec | Resource)
        assert declared.settings.__name__ == "OrderSyncSettings"
        assert "SERVICE_ORDER_SYNC__" in module.read_text()
    assert "from service.workers.order_sync import" in test.read_text()


@pytest.fixture
def full_project(project: Path) -> Path:
    """The small project, with this checkout's `service` package and test configuration."""
    shutil.copytree(
        ROOT / "service",
        project / "service",
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for conftest in ("conftest.py", "postgres_fixtures.py"):
        shutil.copy(ROOT / "tests" / conftest, project / "tests")
    return project


@pytest.mark.parametrize("kind", KINDS)
def test_each_kinds_test_passes_on_the_module_it_was_written_with(
    full_project: Path, kind: str
) -> None:
    name = f"new_{kind}"
    assert new_worker(full_project, name, "--kind", kind, service_from=full_project).returncode == 0
    test = f"tests/test_worker_{name}.py"
    expected = sum(
        isinstance(node, ast.AsyncFunctionDef) and node.name.startswith("test_")
        for node in ast.parse((full_project / test).read_text()).body
    )
    assert expected > 0
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=full_project,
        env={**env, "PYTHONPATH": str(full_project)},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert tested.returncode == 0, tested.stdout[-5000:] + tested.stderr[-5000:]
    assert f"{expected} passed" in tested.stdout


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize(
    "shape", sorted(path.name for path in SHAPES.glob("*.py") if path.name != "__main__.py")
)
def test_a_shape_imports_nothing_of_service_but_its_public_face(shape: str) -> None:
    allowed = {"service"}
    if shape.startswith("test_"):  # a test imports the module it tests too
        allowed |= {"service.testing", "service.workers.my_worker"}
    ours = {
        module
        for module in imported_modules(SHAPES / shape)
        if module == "service" or module.startswith("service.")
    }
    assert ours, f"{shape} imports nothing of service"
    assert ours <= allowed, f"{shape} imports {sorted(ours - allowed)}"


def test_every_kind_has_a_shape_and_a_test_shape() -> None:
    shapes = {path.name for path in SHAPES.glob("*.py")} - {"__main__.py"}
    assert len(shapes) == 2 * len(KINDS)
    assert all(f"test_{shape}" in shapes for shape in shapes if not shape.startswith("test_"))


@pytest.mark.parametrize("kind", KINDS)
def test_the_longest_name_still_gives_files_ruff_passes(project: Path, kind: str) -> None:
    name = "a_rather_long_worker_name_for_a_test_xyz"
    assert len(name) == 40
    assert new_worker(project, name, "--kind", kind).returncode == 0
    files = [
        str(project / "service" / "workers" / f"{name}.py"),
        str(project / "tests" / f"test_worker_{name}.py"),
    ]
    for check in (["check"], ["format", "--check"]):
        linted = subprocess.run(
            [sys.executable, "-m", "ruff", *check, *files],
            cwd=project,
            capture_output=True,
            text=True,
            check=False,
        )
        assert linted.returncode == 0, linted.stdout + linted.stderr
