"""`cruft create`, `cruft check` and `cruft update` against this checkout, as a repository.

cruft clones its template with git, so the working tree is committed to a repository of
its own first: what is tested is this tree, not the last commit.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from tests.template.baking import (
    CRUFT,
    clean_env,
    commit_all,
    cruft_create,
    git_repository_of_this_checkout,
    run,
)


def test_cruft_create_then_check_then_update_brings_a_template_change(tmp_path: Path) -> None:
    template = git_repository_of_this_checkout(tmp_path / "template")
    env = clean_env(tmp_path / "cookiecutter")
    answers = {"project_name": "Kept Up", "include_examples": "no"}
    cruft_create(template, tmp_path / "out", env, **answers)
    project = tmp_path / "out" / "kept-up"
    state = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    assert state["template"] == str(template)
    assert state["context"]["cookiecutter"]["include_examples"] == "no"
    checked = run([*CRUFT, "check"], cwd=project, env=env)
    assert "up to date" in checked.stdout
    commit_all(project, "generated")

    improvement = "\n# An improvement made at the template's root.\n"
    with (template / "service" / "backoff.py").open("a", encoding="utf-8") as backoff:
        backoff.write(improvement)
    commit_all(template, "improve the backoff module")
    stale = run([*CRUFT, "check"], cwd=project, env=env, expect=1)
    assert "out of date" in stale.stdout

    run([*CRUFT, "update", "--skip-apply-ask"], cwd=project, env=env)
    assert (project / "service" / "backoff.py").read_text(encoding="utf-8").endswith(improvement)
    # The update re-ran the generation with the same answers: the identity stayed.
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["name"] == "kept-up"
    assert not (project / "service" / "workers" / "ticker.py").exists()
    assert "up to date" in run([*CRUFT, "check"], cwd=project, env=env).stdout
