"""A generated service grows by adding files: a template update then applies without conflict.

As a user would: generate a project with cruft, add a module of its own (`extension/alerts.py`:
a resource, a typed job that uses it, a metric and a worker, public `service` imports only),
edit nothing of `service/` but the manifest `service/app.py`, and run it: it runs by default
and does its work. Then the template changes its core (runtime, supervision, resources,
config, the jobs engine, the CLI, and its own copy of the manifest, on the very line the
project changed) and `cruft update` brings it: no conflict, the manifest as the project wrote
it, and the service still runs.

One bake and one update. The service runs on this suite's interpreter from the project's
directory (`python -m service` imports the project's `service` package, not this checkout's):
the project's venv would be the same lock file, bootstrapped for nothing but time.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.template.baking import CRUFT, ServiceProcess, clean_env, commit_all, cruft_create, run
from tests.template.baking import git_repository_of_this_checkout as template_repository

ALERTS = Path(__file__).with_name("extension") / "alerts.py"
CITIES = ["Oslo", "Bergen"]

MANIFEST = '''\
"""This service's manifest: its modules, and what runs when SERVICE_WORKERS is unset."""

from service.workers import alerts, jobs  # noqa: F401

WORKERS = ["jobs", "alerts"]
'''

#: The template's core, one file of each part a release changes: each gets a line appended.
CORE = [
    "service/runtime/service.py",
    "service/supervision/supervisor.py",
    "service/resources/resource.py",
    "service/config.py",
    "service/jobs/poller.py",
    "service/cli.py",
]
IMPROVEMENT = "\n# An improvement made at the template's root.\n"


def test_the_projects_module_imports_nothing_of_service_but_its_public_face() -> None:
    imported = set()
    for node in ast.walk(ast.parse(ALERTS.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert {name for name in imported if name.split(".")[0] == "service"} == {"service"}


def test_a_project_extended_by_its_own_files_runs_them_and_takes_a_core_update(
    tmp_path: Path,
) -> None:
    template = template_repository(tmp_path / "template")
    env = clean_env(tmp_path / "cookiecutter")
    answers = {"project_name": "Alerting"}  # with the examples: the job poller is one
    cruft_create(template, tmp_path / "out", env, **answers)
    project = tmp_path / "out" / "alerting"
    commit_all(project, "generated")
    shutil.copy(ALERTS, project / "service" / "workers" / "alerts.py")
    (project / "service" / "app.py").write_text(MANIFEST, encoding="utf-8")
    commit_all(project, "alerts: a resource, a job, a metric and a worker of our own")
    assert changed_files(project, "HEAD~1") == ["service/app.py", "service/workers/alerts.py"]

    sends_alerts(project, tmp_path / "before")

    for relative in CORE:
        with (template / relative).open("a", encoding="utf-8") as core:
            core.write(IMPROVEMENT)
    manifest = template / "service" / "app.py"
    shipped = manifest.read_text(encoding="utf-8")
    assert shipped.count("\nWORKERS = [") == 1
    typed = shipped.replace("\nWORKERS = [", "\nWORKERS: list[str] = [")
    manifest.write_text(typed, encoding="utf-8")
    commit_all(template, "a release: the core changes, and so does the shipped manifest")

    updated = run([*CRUFT, "update", "--skip-apply-ask"], cwd=project, env=env)
    status = git(project, "status", "--porcelain")
    assert not [line for line in status.splitlines() if line[:2] in {"UU", "AA", "DU", "UD"}]
    assert git(project, "diff", "--name-only", "--diff-filter=U") == "", updated.stdout
    markers = ["-e", "^<<<<<<< ", "-e", "^>>>>>>> "]
    conflicted = git(project, "grep", "--untracked", "-l", *markers, check=False)
    assert conflicted == ""
    assert sorted(changed_files(project, "HEAD")) == sorted([*CORE, ".cruft.json"])
    for relative in CORE:
        assert (project / relative).read_text(encoding="utf-8").endswith(IMPROVEMENT), relative
    assert (project / "service" / "app.py").read_text(encoding="utf-8") == MANIFEST
    assert "up to date" in run([*CRUFT, "check"], cwd=project, env=env).stdout

    sends_alerts(project, tmp_path / "after")


def sends_alerts(project: Path, state: Path) -> None:
    """Run the project's service with no SERVICE_WORKERS: its own workers run, each city's
    alert goes through the job table to the outbox, counted; the outbox closes at the stop."""
    state.mkdir()
    outbox = state / "outbox.txt"
    settings = clean_env(
        state / "cookiecutter",
        SERVICE_OPS_PORT="0",
        SERVICE_LOG_FORMAT="json",
        SERVICE_DB__URL=f"sqlite:///{state / 'service.db'}",
        SERVICE_ALERTS__CITIES=",".join(CITIES),
        SERVICE_ALERTS__INTERVAL="3600",  # one round: the first tick is immediate
        SERVICE_OUTBOX__PATH=str(outbox),
    )
    with ServiceProcess(project, settings, python=Path(sys.executable)) as service:
        port = service.wait_for("ops.listening")["port"]
        assert service.wait_for("service.ready")["workers"] == ["jobs", "alerts"]
        for city in CITIES:
            deferred = service.wait_for("alert.deferred", city=city)
            service.wait_for("job.done", job_id=deferred["job_id"], trace_id=deferred["trace_id"])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as scrape:
            exposition = scrape.read().decode()
        for city in CITIES:
            assert f'alerts_sent_total{{city="{city}"}} 1.0' in exposition.splitlines()
        assert service.stop() == 0
    lines = outbox.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "ALERT opened"
    assert sorted(lines[1:-1]) == sorted(f"ALERT {city}" for city in CITIES)
    assert lines[-1] == "ALERT closed"


def changed_files(project: Path, since: str) -> list[str]:
    """Files changed in the working tree (tracked or not) relative to commit `since`."""
    git(project, "add", "--all")
    return git(project, "diff", "--cached", "--name-only", since).splitlines()


def git(project: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(
        ["git", *args], cwd=project, capture_output=True, text=True, check=check, timeout=60
    )
    return done.stdout.strip()
