"""The template directory ships the root itself: links only, and nothing at the root forgotten.

A file added at the root is shipped only if it is linked from the template directory, and a
root-only one must say so in `_root_only`: otherwise it would silently be missing from every
generated project.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from tests.template.baking import ROOT, TEMPLATE_DIR, cookiecutter_json, entries


def test_the_template_directory_holds_only_relative_links_to_the_same_name_at_the_root() -> None:
    links = entries(TEMPLATE_DIR)
    assert links
    for entry in links:
        assert entry.is_symlink(), f"{entry.name} in the template directory is not a link"
        assert os.readlink(entry) == f"../{entry.name}", f"{entry.name} links elsewhere"
        assert entry.exists(), f"{entry.name} links to nothing"


def test_every_root_entry_is_shipped_or_listed_as_root_only() -> None:
    shipped = {entry.name for entry in entries(TEMPLATE_DIR)}
    root_only = set(cookiecutter_json()["_root_only"])
    unaccounted = [
        path.name
        for path in entries(ROOT)
        if path.name not in shipped and path.name not in root_only
    ]
    assert unaccounted == [], (
        f"neither shipped nor root-only: {unaccounted}. Ship it with "
        f"`ln -s ../NAME '{TEMPLATE_DIR.name}/NAME'`, or add it to _root_only in cookiecutter.json"
    )
    assert shipped.isdisjoint(root_only), "shipped and root-only at once"


def test_every_listed_path_exists() -> None:
    answers = cookiecutter_json()
    stale = [
        relative
        for key in ("_root_only", "_examples")
        for relative in answers[key]
        if not (ROOT / relative).exists()
    ]
    assert stale == []


def test_the_template_machinery_and_its_tests_are_root_only() -> None:
    root_only = cookiecutter_json()["_root_only"]
    assert {"cookiecutter.json", "hooks", TEMPLATE_DIR.name, "tests/template"} <= set(root_only)


def test_nothing_a_project_keeps_without_the_examples_imports_one() -> None:
    """Without the examples their modules are gone: a file left behind that imports one would
    fail in every project generated that way (the manifest is replaced by an empty one)."""
    examples = cookiecutter_json()["_examples"]
    modules = {
        ".".join(Path(relative).with_suffix("").parts)
        for relative in examples
        if relative.startswith("service/workers/")
    }
    kept = [
        path
        for top in ("service", "tests", "scripts")
        for path in sorted((ROOT / top).rglob("*.py"))
        if str(path.relative_to(ROOT)) not in {*examples, "service/app.py"}
        and not path.relative_to(ROOT).is_relative_to("tests/template")
    ]
    importing = [str(path.relative_to(ROOT)) for path in kept if imported_modules(path) & modules]
    assert importing == [], f"add them to _examples in cookiecutter.json: {importing}"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, `from package import module` counted as both."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found
