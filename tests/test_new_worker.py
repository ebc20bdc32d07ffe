"""`./scripts/new-worker`: the names it refuses and why, and the modules it writes.

Each test runs the scaffolder on a project of its own in `tmp_path`: a copy of
`scripts/new_worker/` and `pyproject.toml`, with empty `service/workers/` and `tests/`. That
the written worker passes ruff, mypy and its own tests inside a real project, and runs
there, is the template's tests' part (tests/template/, at the template's root).
"""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service import WorkerSpec

ROOT = Path(__file__).resolve().parents[1]
KINDS = ["ticker", "consumer", "poller"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "scripts" / "new_worker", tmp_path / "scripts" / "new_worker")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "service" / "workers").mkdir(parents=True)
    (tmp_path / "tests").mkdir()
    return tmp_path


def new_worker(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # This checkout's `service` package, for the settings the name must not collide with.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
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
        ("Reporter", "ticker", "a worker name is lowercase letters, digits and _"),
        ("2fast", "ticker", "a worker name is lowercase letters, digits and _"),
        ("order-feed", "consumer", "a worker name is lowercase letters, digits and _"),
        ("x" * 41, "ticker", "longer than 40 characters"),
        ("class", "ticker", "it is a Python keyword"),
        ("match", "poller", "it is a Python keyword"),
        ("list", "ticker", "it is a Python built-in"),
        ("db", "poller", "SERVICE_DB is a setting of the service itself"),
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
def test_the_kind_is_required_and_must_be_one_of_the_three(project: Path, args: list[str]) -> None:
    refused = new_worker(project, *args)
    assert refused.returncode == 2
    assert "--kind" in refused.stderr
    assert written(project) == []


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_writes_a_worker_of_that_name_and_its_test(project: Path, kind: str) -> None:
    done = new_worker(project, "order_sync", "--kind", kind)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:2] == [
        "wrote service/workers/order_sync.py",
        "wrote tests/test_worker_order_sync.py",
    ]
    module = project / "service" / "workers" / "order_sync.py"
    test = project / "tests" / "test_worker_order_sync.py"
    for path in (module, test):
        text = path.read_text()
        assert "my_worker" not in text
        assert "MyWorker" not in text
        assert "MY_WORKER" not in text
    spec = runpy.run_path(str(module))["order_sync"]
    assert isinstance(spec, WorkerSpec)
    assert spec.name == "order_sync"
    assert spec.settings.__name__ == "OrderSyncSettings"
    assert "from service.workers.order_sync import" in test.read_text()
    assert "SERVICE_ORDER_SYNC__" in module.read_text()


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
