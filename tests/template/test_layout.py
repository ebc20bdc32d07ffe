"""The template directory ships the root itself: links only, and nothing at the root forgotten.

A file added at the root is shipped only if it is linked from the template directory, and a
root-only one must say so in `_root_only`: otherwise it would silently be missing from every
generated project.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from tests.template.baking import POST_GEN, ROOT, TEMPLATE_DIR, cookiecutter_json, entries
from tests.test_docs import read_docs


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
    modules = example_modules()
    kept = [
        path
        for top in ("service", "tests", "scripts")
        for path in sorted((ROOT / top).rglob("*.py"))
        if str(path.relative_to(ROOT)) not in {*examples, "service/app.py"}
        and not path.relative_to(ROOT).is_relative_to("tests/template")
    ]
    importing = [str(path.relative_to(ROOT)) for path in kept if imported_modules(path) & modules]
    assert importing == [], f"add them to _examples in cookiecutter.json: {importing}"


def test_docs_blocks_that_import_an_example_go_with_the_examples() -> None:
    """A Python block of README.md or docs/ that imports an example's module must sit between
    `<!-- examples -->` markers: in a project generated without the examples it would fail
    that project's own check of its docs (tests/test_docs.py)."""
    modules = example_modules()
    blocks, _ = read_docs(ROOT)
    ranges: dict[str, list[range]] = {}
    for block in blocks:
        if block.page not in ranges:
            ranges[block.page] = examples_ranges(ROOT / block.page)
    outside = [
        block.where
        for block in blocks
        if imported_names(block.code) & modules
        and not any(block.line in lines for lines in ranges[block.page])
    ]
    assert outside == [], f"put them between <!-- examples --> markers: {outside}"


def example_modules() -> set[str]:
    return {
        ".".join(Path(relative).with_suffix("").parts)
        for relative in cookiecutter_json()["_examples"]
        if relative.startswith("service/workers/")
    }


def examples_ranges(page: Path) -> list[range]:
    """The lines of a page between `<!-- examples -->` and its closing marker."""
    opening, closing = POST_GEN.EXAMPLES
    found, start = [], None
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip() == opening:
            start = number
        elif line.strip() == closing and start is not None:
            found.append(range(start, number))
            start = None
    return found


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, `from package import module` counted as both."""
    return imported_names(path.read_text(encoding="utf-8"))


def imported_names(source: str) -> set[str]:
    """Every module some source imports, `from package import module` counted as both."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found
