"""Generated projects work on their own: their whole suite passes, the service runs, and
`./scripts/new-worker` adds modules of every kind that pass the checks, and workers that run.

One test bakes two projects, with the defaults and with awkward answers and no examples, and
runs their `./scripts/test` (bootstrap, ruff, mypy, pytest) side by side, as a developer
would, each from a venv of its own filled from the session's wheelhouse. Side by side
because each suite spends most of its time waiting (processes starting, servers answering),
and one test rather than two because pytest-xdist hands out tests in consecutive batches: two
slow tests would land on one worker, one after the other.

After the scaffolding, `./scripts/test tests/test_worker_*.py` runs ruff and mypy over the
whole project again but pytest over the new tests only: the rest of the suite passed a
moment before, and no other test imports a worker module it does not name (a whole second
run would add minutes for nothing).
"""

from __future__ import annotations

import ast
import re
import socket
from pathlib import Path

import pytest

from tests.template.baking import (
    AWKWARD,
    ServiceProcess,
    bake,
    clean_env,
    finished,
    run,
    running,
)

EXAMPLES = ["jobs", "feed", "ticker", "feed_consumer"]
#: One new module of each kind: (name, kind); the first three are workers.
NEW_MODULES = [
    ("reporter", "ticker"),
    ("order_feed", "consumer"),
    ("inbox", "poller"),
    ("mailer", "resource"),
    ("send_report", "job"),
]
NEW_WORKERS = NEW_MODULES[:3]


def project_env(tmp_path: Path, wheelhouse: Path, **settings: str) -> dict[str, str]:
    return clean_env(
        tmp_path / "cookiecutter", PIP_FIND_LINKS=str(wheelhouse), PIP_NO_INDEX="1", **settings
    )


def service_env(project: Path, wheelhouse: Path, **settings: str) -> dict[str, str]:
    return project_env(
        project.parent,
        wheelhouse,
        SERVICE_OPS_PORT="0",
        SERVICE_LOG_FORMAT="json",
        SERVICE_DB__URL=f"sqlite:///{project.parent / 'service.db'}",
        **settings,
    )


def passed(test_run_output: str) -> int:
    """How many tests pytest's closing line says passed."""
    counts = re.findall(r"(\d+) passed", test_run_output)
    assert counts, f"no pytest summary in:\n{test_run_output[-5000:]}"
    return int(counts[-1])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.slow
def test_generated_projects_pass_their_own_suite_run_and_take_new_workers(
    tmp_path: Path, wheelhouse: Path
) -> None:
    defaults = bake(tmp_path / "defaults")
    awkward = bake(tmp_path / "awkward", **AWKWARD)
    env = project_env(tmp_path, wheelhouse)
    logs = {project: tmp_path / f"{project.name}.log" for project in (defaults, awkward)}
    with (
        running(["./scripts/test"], defaults, env, logs[defaults]) as first,
        running(["./scripts/test"], awkward, env, logs[awkward]) as second,
    ):
        assert passed(finished(first, logs[defaults])) > 0
        assert passed(finished(second, logs[awkward])) > 0

    the_examples_run(defaults, wheelhouse)
    refused = run(["./scripts/new-worker", "ticker", "--kind", "ticker"], defaults, env, expect=2)
    assert "service/workers/ticker.py exists" in refused.stderr

    without_examples_it_runs_empty(awkward, wheelhouse)
    new_workers_pass_and_run(awkward, wheelhouse, env)


def the_examples_run(project: Path, wheelhouse: Path) -> None:
    port = free_port()  # the demo feed's, for this run alone
    settings = service_env(
        project,
        wheelhouse,
        SERVICE_FEED__PORT=str(port),
        SERVICE_FEED_CONSUMER__URL=f"ws://127.0.0.1:{port}/events",
    )
    with ServiceProcess(project, settings) as service:
        assert service.wait_for("service.ready")["workers"] == EXAMPLES
        service.wait_for("feed.connected")
        tick = service.wait_for("tick")
        service.wait_for("job.done", job_id=tick["job_id"], trace_id=tick["trace_id"])
        assert service.stop() == 0
    assert service.wait_for("service.stopped")["exit_code"] == 0


def without_examples_it_runs_empty(project: Path, wheelhouse: Path) -> None:
    with ServiceProcess(project, service_env(project, wheelhouse)) as service:
        service.wait_for("service.no_workers")
        assert service.wait_for("service.ready")["workers"] == []
        assert service.stop() == 0


def new_workers_pass_and_run(project: Path, wheelhouse: Path, env: dict[str, str]) -> None:
    for name, kind in NEW_MODULES:
        written = run(["./scripts/new-worker", name, "--kind", kind], project, env)
        assert f"wrote service/workers/{name}.py" in written.stdout
    new_tests = [f"tests/test_worker_{name}.py" for name, _ in NEW_MODULES]
    expected = sum(
        isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef) and node.name.startswith("test_")
        for path in new_tests
        for node in ast.parse((project / path).read_text(encoding="utf-8")).body
    )
    assert expected > 0
    assert passed(run(["./scripts/test", *new_tests], project, env).stdout) == expected

    names = [name for name, _ in NEW_WORKERS]
    settings = service_env(project, wheelhouse, SERVICE_WORKERS=",".join(names))
    with ServiceProcess(project, settings) as service:
        assert service.wait_for("service.ready")["workers"] == names
        for name in names:
            service.wait_for("worker.started", worker=name)
        service.wait_for("reporter.tick", worker="reporter")
        assert service.stop() == 0
    outcomes = {line["worker"]: line["outcome"] for line in service.events("worker.exited")}
    assert outcomes == dict.fromkeys(names, "stopped")
