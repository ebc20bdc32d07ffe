"""The post-generation hook's steps, each on a small tree of the test's own: where it must stop
a generation rather than leave a project that only looks right, it does."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from tests.template.baking import POST_GEN

TemplateError = POST_GEN.TemplateError


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


README = """\
# title

intro

<!-- template-only -->
For the template only.
<!-- /template-only -->

## Kept

<!-- examples -->
## The examples

About them.
<!-- /examples -->

## Last
"""


def test_template_only_blocks_go_and_example_blocks_go_without_the_examples(
    tmp_path: Path,
) -> None:
    readme = write(tmp_path / "README.md", README)
    POST_GEN.strip_blocks(readme, keep_examples=False)
    assert readme.read_text() == "# title\n\nintro\n\n## Kept\n\n## Last\n"


def test_with_the_examples_only_their_marker_lines_go(tmp_path: Path) -> None:
    readme = write(tmp_path / "README.md", README)
    POST_GEN.strip_blocks(readme, keep_examples=True)
    assert readme.read_text() == (
        "# title\n\nintro\n\n## Kept\n\n## The examples\n\nAbout them.\n\n## Last\n"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<!-- /examples -->\n", "README.md:1: <!-- /examples --> closes no <!-- examples -->"),
        (
            "<!-- examples -->\n<!-- /template-only -->\n",
            "README.md:2: <!-- /template-only --> closes no <!-- template-only -->",
        ),
        ("a\n<!-- template-only -->\nb\n", "README.md: <!-- template-only --> is never closed"),
    ],
)
def test_unbalanced_markers_stop_the_generation(tmp_path: Path, text: str, problem: str) -> None:
    readme = write(tmp_path / "README.md", text)
    with pytest.raises(TemplateError) as raised:
        POST_GEN.strip_blocks(readme, keep_examples=True)
    assert str(raised.value) == problem


@pytest.mark.parametrize("times", [0, 2])
def test_an_identity_string_found_other_than_once_stops_the_generation(
    tmp_path: Path, times: int
) -> None:
    path = write(tmp_path / "pyproject.toml", 'name = "old"\n' * times)
    with pytest.raises(TemplateError, match=f"found it {times} times"):
        POST_GEN.replace_once(path, 'name = "old"\n', 'name = "new"\n')
    assert path.read_text() == 'name = "old"\n' * times


def test_an_identity_string_found_once_is_replaced(tmp_path: Path) -> None:
    path = write(tmp_path / "pyproject.toml", '[project]\nname = "old"\n')
    POST_GEN.replace_once(path, 'name = "old"\n', 'name = "new"\n')
    assert path.read_text() == '[project]\nname = "new"\n'


def test_a_link_that_survived_stops_the_generation(tmp_path: Path) -> None:
    write(tmp_path / "real" / "file.py")
    (tmp_path / "service").symlink_to("real")
    with pytest.raises(TemplateError, match="service is still a link"):
        POST_GEN.refuse_links(tmp_path)


def test_a_link_that_arrived_as_a_text_file_stops_the_generation(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "../pyproject.toml")
    with pytest.raises(TemplateError, match=r"pyproject\.toml holds the text of a link"):
        POST_GEN.refuse_links(tmp_path)


def test_what_gitignore_ignores_is_removed_as_git_would_read_it(tmp_path: Path) -> None:
    kept = [
        write(tmp_path / ".gitignore", "__pycache__/\n*.py[cod]\n/var/\n.venv/\n"),
        write(tmp_path / "service" / "module.py"),
        write(tmp_path / "service" / "var" / "data.txt"),  # /var/ is the top one only
        write(tmp_path / "__pycache__"),  # a file: `__pycache__/` is for directories only
    ]
    gone = [
        write(tmp_path / "service" / "__pycache__" / "module.cpython-311.pyc"),
        write(tmp_path / "service" / "stray.pyc"),
        write(tmp_path / "var" / "service.db"),
        write(tmp_path / ".venv" / "bin" / "python"),
    ]
    POST_GEN.remove_ignored(tmp_path)
    assert all(path.exists() for path in kept)
    assert not any(path.exists() for path in gone)
    assert not (tmp_path / "service" / "__pycache__").exists()


@pytest.mark.parametrize("line", ["!keep.pyc", "docs/build/", "**/cache"])
def test_a_gitignore_form_the_hook_does_not_understand_stops_the_generation(
    tmp_path: Path, line: str
) -> None:
    write(tmp_path / ".gitignore", f"__pycache__/\n{line}\n")
    with pytest.raises(TemplateError, match="a form this hook does not understand"):
        POST_GEN.remove_ignored(tmp_path)


@pytest.mark.parametrize(
    "text", ['say "hi"', "back\\slash", "ünïcode — and 'single' quotes", "{braces}", "\\u0041"]
)
def test_answers_become_toml_strings_that_read_back_as_given(text: str) -> None:
    assert tomllib.loads(f"value = {POST_GEN.toml_string(text)}")["value"] == text


def test_walk_lists_parents_first_and_does_not_follow_links(tmp_path: Path) -> None:
    write(tmp_path / "a" / "b.txt")
    os.symlink(tmp_path / "a", tmp_path / "link")
    assert [str(p.relative_to(tmp_path)) for p in POST_GEN.walk(tmp_path)] == [
        "a",
        "a/b.txt",
        "link",
    ]
