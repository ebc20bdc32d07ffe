"""What `cookiecutter --no-input` makes of this checkout, with the defaults and awkward answers.

Each generated project must be the root's files, less what is root-only, with its own
identity and nothing of the template's machinery left: no link, no Jinja, no marker.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

from tests.template.baking import (
    AWKWARD,
    POST_GEN,
    ROOT,
    ROOT_PROJECT,
    TEMPLATE_DIR,
    bake,
    clean_env,
    cookiecutter_json,
    run,
)

#: The files whose text the post-generation hook rewrites (the identity's places, the name
#: where else it appears), besides the Markdown files it strips or renames in (`rewritten`);
#: every other one is the root's own.
REWRITTEN = {
    "pyproject.toml",
    "README.md",
    "Dockerfile",
    "requirements/main.txt",
    "requirements/dev.txt",
}
MARKERS = (*POST_GEN.TEMPLATE_ONLY, *POST_GEN.EXAMPLES)


def rewritten(expected: dict[str, Path]) -> set[str]:
    """REWRITTEN, every shipped Markdown file with a marker line, and every shipped Markdown
    file that names the root (the image in a command, say)."""
    found = set(REWRITTEN)
    for name, path in expected.items():
        if name.endswith(".md"):
            text = path.read_text(encoding="utf-8")
            lines = {line.strip() for line in text.splitlines()}
            if ROOT_PROJECT["name"] in text or not lines.isdisjoint(MARKERS):
                found.add(name)
    return found


@pytest.fixture(scope="module")
def defaults(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bake(tmp_path_factory.mktemp("defaults"))


@pytest.fixture(scope="module")
def awkward(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bake(tmp_path_factory.mktemp("awkward"), **AWKWARD)


def files(top: Path) -> dict[str, Path]:
    return {str(path.relative_to(top)): path for path in sorted(top.rglob("*")) if path.is_file()}


def shipped_root_files(*, examples: bool) -> dict[str, Path]:
    """What a project should get: every file the links reach, less what the hook removes."""
    answers = cookiecutter_json()
    gone = [*answers["_root_only"], *([] if examples else answers["_examples"])]
    rules = POST_GEN.ignore_rules((ROOT / ".gitignore").read_text(encoding="utf-8"))
    found = {}
    for link in TEMPLATE_DIR.iterdir():
        real = ROOT / link.name
        for path in [real, *real.rglob("*")] if real.is_dir() else [real]:
            relative = path.relative_to(ROOT)
            if any(POST_GEN.is_ignored(part, ROOT, rules) for part in [path, *path.parents]) or any(
                relative.is_relative_to(removed) for removed in gone
            ):
                continue
            if path.is_file():
                found[str(relative)] = path
    return found


@pytest.mark.parametrize("examples", [True, False], ids=["defaults", "awkward"])
def test_the_project_is_the_roots_files_less_the_root_only_ones(
    examples: bool, defaults: Path, awkward: Path
) -> None:
    project = defaults if examples else awkward
    expected = shipped_root_files(examples=examples)
    generated = files(project)
    assert sorted(generated) == sorted(expected)
    changed_by_the_hook = rewritten(expected) | ({"service/app.py"} if not examples else set())
    changed = [
        name
        for name, path in generated.items()
        if name not in changed_by_the_hook and path.read_bytes() != expected[name].read_bytes()
    ]
    assert changed == []
    assert all(
        (path.stat().st_mode & 0o111) == (expected[name].stat().st_mode & 0o111)
        for name, path in generated.items()
    ), "an executable lost its mode (or gained one)"


@pytest.mark.parametrize("examples", [True, False], ids=["defaults", "awkward"])
def test_nothing_of_the_template_machinery_is_left(
    examples: bool, defaults: Path, awkward: Path
) -> None:
    project = defaults if examples else awkward
    everything = sorted(project.rglob("*"))
    assert [path for path in everything if path.is_symlink()] == []
    assert [path for path in everything if "{{" in path.name or "{%" in path.name] == []
    for path in everything:
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            for marker in ("{{", "{%", "template-only", "<!-- examples -->", "<!-- /examples"):
                assert marker not in text, f"{path.relative_to(project)} holds {marker!r}"
            assert ROOT_PROJECT["name"] not in text, f"{path.relative_to(project)} names the root"
    for root_only in ("cookiecutter.json", "hooks", "tests/template"):
        assert not (project / root_only).exists()


def test_the_defaults_give_a_project_of_that_name_with_the_examples(defaults: Path) -> None:
    assert defaults.name == "my-service"
    project = tomllib.loads((defaults / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == "my-service"
    assert project["description"] == "A long-lived Trio service."
    assert project["authors"] == [{"name": "Your Name", "email": "you@example.com"}]
    readme = (defaults / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("# My Service\n\nA long-lived Trio service.\n\n")
    assert "## The examples" in readme
    assert "SERVICE_TICKER__INTERVAL" in (defaults / "docs/configuration.md").read_text()
    assert "## Generating a service" not in readme
    assert "docs/template.md" not in readme
    assert "docker build -t my-service ." in (defaults / "Dockerfile").read_text()
    for page in [defaults / "README.md", *(defaults / "docs").rglob("*.md")]:
        for image in re.findall(r"docker build -t (\S+)", page.read_text(encoding="utf-8")):
            assert image == "my-service", f"{page.name} builds {image}"
    assert 'org.opencontainers.image.title="my-service"' in (defaults / "Dockerfile").read_text()
    assert (defaults / "service/app.py").read_bytes() == (ROOT / "service/app.py").read_bytes()


def test_awkward_answers_arrive_exactly_as_given(awkward: Path) -> None:
    assert awkward.name == AWKWARD["project_slug"]
    project = tomllib.loads((awkward / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == AWKWARD["project_slug"]
    assert project["description"] == AWKWARD["description"]
    assert project["authors"] == [
        {"name": AWKWARD["author_name"], "email": AWKWARD["author_email"]}
    ]
    readme = (awkward / "README.md").read_text(encoding="utf-8")
    assert readme.startswith(f"# {AWKWARD['project_name']}\n\n{AWKWARD['description']}\n\n")


def test_without_the_examples_there_are_no_example_workers_and_no_default_ones(
    awkward: Path,
) -> None:
    for relative in cookiecutter_json()["_examples"]:
        assert not (awkward / relative).exists()
    assert sorted(p.name for p in (awkward / "service/workers").iterdir()) == ["__init__.py"]
    manifest = ast.parse((awkward / "service/app.py").read_text(encoding="utf-8"))
    shipped = ast.parse((ROOT / "service/app.py").read_text(encoding="utf-8"))
    assert ast.get_docstring(manifest) == ast.get_docstring(shipped)
    [_, workers] = manifest.body  # nothing imported: the examples' modules are gone
    assert isinstance(workers, ast.AnnAssign)
    assert isinstance(workers.target, ast.Name)
    assert workers.target.id == "WORKERS"
    assert workers.value is not None
    assert ast.literal_eval(workers.value) == []
    readme = (awkward / "README.md").read_text(encoding="utf-8")
    assert "## The examples" not in readme
    assert "SERVICE_TICKER__INTERVAL" not in (awkward / "docs/configuration.md").read_text()
    assert "## A worker" in readme


def test_the_slug_defaults_to_the_name_made_fit_for_a_distribution(tmp_path: Path) -> None:
    project = bake(tmp_path, project_name="Ünïcode & Co.  Service")
    assert project.name == "unicode-co-service"


@pytest.mark.parametrize(
    ("answers", "problem"),
    [
        ({"project_slug": "Not A Slug"}, "project_slug: 'Not A Slug' must be lowercase"),
        ({"project_slug": "trailing-"}, "project_slug: 'trailing-' must be lowercase"),
        ({"author_email": "nobody"}, "author_email: 'nobody' is not an email address"),
        ({"description": "two\nlines"}, "description: must be one line"),
        ({"project_name": "Tab\tName"}, "project_name: must be one line"),
        ({"author_name": ""}, "author_name: must not be empty"),
    ],
)
def test_answers_a_project_could_not_carry_are_refused_before_anything_is_written(
    tmp_path: Path, answers: dict[str, str], problem: str
) -> None:
    output = tmp_path / "out"
    output.mkdir()
    refused = run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            "--output-dir",
            output,
            ROOT,
            *(f"{key}={value}" for key, value in answers.items()),
        ],
        cwd=tmp_path,
        env=clean_env(tmp_path / "cookiecutter"),
        expect=1,
    )
    assert f"cannot generate the project: {problem}" in refused.stderr
    assert list(output.iterdir()) == []
