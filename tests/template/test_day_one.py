"""What a team expects of a generated project on day one: the image, CI, pre-commit, .gitignore.

No container runtime or CI runner is at hand here, so these read the files as those tools
would and check what they would do with them; the generated service itself is run by
test_generated_projects.py, exactly as the image's CMD runs it.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.template.baking import ROOT, bake


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bake(tmp_path_factory.mktemp("day-one"))


def dockerfile(project: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    logical = re.sub(r"\\\n\s*", " ", (project / "Dockerfile").read_text(encoding="utf-8"))
    instructions = []
    for line in logical.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def test_the_image_runs_python_m_service_in_exec_form_so_signals_reach_it(project: Path) -> None:
    [cmd] = [arguments for keyword, arguments in dockerfile(project) if keyword == "CMD"]
    assert json.loads(cmd) == ["python", "-m", "service"]
    assert "ENTRYPOINT" not in {keyword for keyword, _ in dockerfile(project)}


def test_the_image_runs_as_a_user_that_is_not_root(project: Path) -> None:
    users = [arguments for keyword, arguments in dockerfile(project) if keyword == "USER"]
    assert users
    assert users[-1] not in {"root", "0", "0:0"}


def test_the_image_installs_the_hashed_lock_file_and_copies_what_exists(project: Path) -> None:
    instructions = dockerfile(project)
    runs = [shlex.split(arguments) for keyword, arguments in instructions if keyword == "RUN"]
    assert any(
        words[:2] == ["pip", "install"]
        and "--require-hashes" in words
        and words[words.index("-r") + 1] == "requirements/main.txt"
        for words in runs
        if "-r" in words
    )
    allowed = [
        line[1:].rstrip("/")
        for line in (project / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    ]
    for keyword, arguments in instructions:
        if keyword == "COPY":
            *sources, _ = arguments.split()
            for source in sources:
                assert (project / source).exists(), f"COPY {source}: no such file"
                assert source.rstrip("/") in allowed, f"COPY {source}: .dockerignore hides it"


def test_the_base_image_has_the_python_the_project_requires(project: Path) -> None:
    [base] = [arguments for keyword, arguments in dockerfile(project) if keyword == "FROM"]
    version = re.fullmatch(r"python:(\d+\.\d+)-slim", base)
    assert version is not None
    requires = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    assert requires["requires-python"] == f">={version.group(1)}"


def workflow(project: Path) -> dict[Any, Any]:
    loaded = yaml.safe_load((project / ".github/workflows/ci.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def commands(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def test_ci_runs_lint_types_and_tests_on_pushes_and_pull_requests(project: Path) -> None:
    ci = workflow(project)
    triggers = ci.get("on", ci.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    jobs = ci["jobs"]
    assert set(jobs) == {"lint", "types", "tests"}
    assert {".venv/bin/ruff check .", ".venv/bin/ruff format --check ."} <= set(
        commands(jobs["lint"])
    )
    assert ".venv/bin/mypy" in commands(jobs["types"])
    assert ".venv/bin/python -m pytest -n auto" in commands(jobs["tests"])


def test_every_ci_job_starts_from_the_projects_own_scripts(project: Path) -> None:
    for name, job in workflow(project)["jobs"].items():
        assert commands(job)[0] in {"./scripts/bootstrap", "./scripts/system-deps"}, name
        assert "./scripts/bootstrap" in commands(job), name
        for command in commands(job):
            script = command.split()[0]
            if script.startswith("./scripts/"):
                path = project / script
                assert path.is_file(), f"{name}: {script} does not exist"
                assert path.stat().st_mode & 0o111, f"{name}: {script} is not executable"


def test_pre_commit_runs_ruff_and_mypy_from_the_projects_venv(project: Path) -> None:
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert set(hooks) == {"ruff-check", "ruff-format", "mypy"}
    for hook in hooks.values():
        assert hook["language"] == "system"
        executable = hook["entry"].split()[0]
        # The same lock file as this checkout's, whose .venv the suite runs in.
        assert (ROOT / executable).is_file(), f"{hook['id']}: {executable} does not exist"
    assert hooks["mypy"]["pass_filenames"] is False  # mypy checks what pyproject names


def test_gitignore_keeps_the_venv_caches_and_local_state_out(project: Path) -> None:
    lines = set((project / ".gitignore").read_text(encoding="utf-8").splitlines())
    assert {".venv/", "__pycache__/", "/var/"} <= lines
