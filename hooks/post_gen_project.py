"""After cookiecutter copied the root's files: make them the new project's, and check them.

The template directory holds nothing but links to the root's own files, copied verbatim
(`_copy_without_render`), so every change at the root reaches the projects generated after
it, and `cruft update` carries it to the ones generated before. What differs between the
root and a generated project is done here, and each step fails loudly rather than leave a
project that only looks right:

- a link that survived, or arrived as a text file (as archive downloads deliver them), means
  the copy is not the root's files: stop;
- what is root-only (`_root_only` in cookiecutter.json: the template's own machinery and
  tests) and what the shipped .gitignore ignores (caches, local state) is removed;
- without the examples, their files (`_examples`) go, each of which must exist, and the
  manifest `service/app.py` becomes an empty one: its docstring, no imports, no workers;
- Markdown blocks between `<!-- template-only -->` and `<!-- /template-only -->` go, and so
  do blocks between `<!-- examples -->` and `<!-- /examples -->` without the examples;
- the identity is rewritten: each structured place must occur exactly once (a second one
  would be ambiguous, a missing one means the root changed shape), then the distribution
  name, which is also the image name, is replaced wherever else it appears.

The metrics namespace is not rewritten yet: service/observability/metrics.py spells the
`service_` prefix in each metric's name. Once it names the namespace in one constant, that
constant's line belongs in `rename` below.

Cookiecutter renders this file with Jinja before running it: the answers arrive as JSON in
the string at the bottom, and nothing else here may look like a Jinja tag.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import shutil
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

TEMPLATE_ONLY = ("<!-- template-only -->", "<!-- /template-only -->")
EXAMPLES = ("<!-- examples -->", "<!-- /examples -->")

#: What an empty manifest holds after the shipped one's docstring.
_NO_WORKERS = """
#: What runs when SERVICE_WORKERS is not set: nothing yet, so the service starts, says
#: `service.no_workers`, and waits for a signal. Import the project's modules above and
#: name their workers here, in start order.
WORKERS: list[str] = []
"""


class TemplateError(Exception):
    """The generated project would be wrong; the message says where and why."""


def main(project: Path, answers: dict[str, Any]) -> None:
    refuse_links(project)
    for relative in answers["_root_only"]:
        remove(project / relative)
    remove_ignored(project)
    examples = answers["include_examples"] == "yes"
    if not examples:
        for relative in answers["_examples"]:
            if not (project / relative).exists():
                raise TemplateError(f"_examples lists {relative}, which does not exist")
            remove(project / relative)
        empty_manifest(project / "service" / "app.py")
    for markdown in project.rglob("*.md"):
        strip_blocks(markdown, keep_examples=examples)
    rename(project, answers)


def empty_manifest(app: Path) -> None:
    """Keep the manifest's docstring (what the file is for), drop the examples' imports and
    workers: what is left imports nothing that was just removed."""
    if not app.is_file():
        raise TemplateError("service/app.py, the manifest, does not exist")
    text = app.read_text(encoding="utf-8")
    module = ast.parse(text)
    if not (module.body and ast.get_docstring(module) is not None):
        raise TemplateError("service/app.py does not start with a docstring")
    docstring = text.splitlines(keepends=True)[: module.body[0].end_lineno]
    app.write_text("".join(docstring) + _NO_WORKERS, encoding="utf-8")


def refuse_links(project: Path) -> None:
    for path in walk(project):
        if path.is_symlink():
            raise TemplateError(f"{path.relative_to(project)} is still a link")
    for path in project.iterdir():
        if path.is_file() and path.read_bytes().strip() == f"../{path.name}".encode():
            raise TemplateError(
                f"{path.name} holds the text of a link, not the file it points to: the "
                "template arrived without its links (an archive download?); clone it with git"
            )


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def remove_ignored(project: Path) -> None:
    """Remove what the project's .gitignore ignores: caches and local state, never shipped."""
    rules = ignore_rules((project / ".gitignore").read_text(encoding="utf-8"))

    def ignored(path: Path) -> bool:
        return is_ignored(path, project, rules)

    for path in list(walk(project, prune=ignored)):
        if ignored(path):
            remove(path)


#: A .gitignore line as (glob, anchored at the top, directories only).
IgnoreRule = tuple[str, bool, bool]


def ignore_rules(gitignore: str) -> list[IgnoreRule]:
    """The forms a .gitignore here uses: a name or glob, `/` at the end for directories only,
    `/` at the start to anchor at the top. Anything else is refused, not guessed at."""
    rules = []
    for line in gitignore.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        body = line.strip("/")
        if line.startswith("!") or "/" in body or "**" in body:
            raise TemplateError(f".gitignore: {line!r} is a form this hook does not understand")
        rules.append((body, line.startswith("/"), line.endswith("/")))
    return rules


def is_ignored(path: Path, top: Path, rules: list[IgnoreRule]) -> bool:
    return any(
        fnmatch.fnmatchcase(path.name, glob)
        and (not anchored or path.parent == top)
        and (not directory_only or path.is_dir())
        for glob, anchored, directory_only in rules
    )


def walk(top: Path, prune: Callable[[Path], bool] = lambda _: False) -> Iterator[Path]:
    """Every path under `top`, parents first, not descending into links or pruned dirs."""
    for path in sorted(top.iterdir()):
        yield path
        if path.is_dir() and not path.is_symlink() and not prune(path):
            yield from walk(path, prune)


def strip_blocks(path: Path, *, keep_examples: bool) -> None:
    """Drop the marker lines, and the blocks they enclose that this project does not keep."""
    kept: list[str] = []
    open_blocks: list[str] = []
    squeeze = False  # a marker or a block just went: leave one blank line there, not two
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        marker = line.strip()
        if marker in (TEMPLATE_ONLY[0], EXAMPLES[0]):
            open_blocks.append(marker)
            squeeze = True
        elif marker in (TEMPLATE_ONLY[1], EXAMPLES[1]):
            opening = TEMPLATE_ONLY[0] if marker == TEMPLATE_ONLY[1] else EXAMPLES[0]
            if not open_blocks or open_blocks.pop() != opening:
                raise TemplateError(f"{path.name}:{number}: {marker} closes no {opening}")
            squeeze = True
        elif TEMPLATE_ONLY[0] in open_blocks or (EXAMPLES[0] in open_blocks and not keep_examples):
            continue
        elif squeeze and not marker and kept and not kept[-1].strip():
            squeeze = False
        else:
            squeeze = False
            kept.append(line)
    if open_blocks:
        raise TemplateError(f"{path.name}: {open_blocks[-1]} is never closed")
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")


def rename(project: Path, answers: dict[str, Any]) -> None:
    pyproject = project / "pyproject.toml"
    metadata = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    root_name, root_description = metadata["name"], metadata["description"]
    slug = answers["project_slug"]
    replace_once(pyproject, f'name = "{root_name}"\n', f'name = "{slug}"\n')
    replace_once(
        pyproject,
        re.compile(r'^description = "[^\n]*"\n', re.MULTILINE),
        f"description = {toml_string(answers['description'])}\n"
        + "authors = [{ name = "
        + toml_string(answers["author_name"])
        + ", email = "
        + toml_string(answers["author_email"])
        + " }]\n",
    )
    readme = project / "README.md"
    title = re.compile(rf"^# {re.escape(root_name)}\n", re.MULTILINE)
    replace_once(readme, title, f"# {answers['project_name']}\n")
    replace_once(readme, f"\n{root_description}\n", f"\n{answers['description']}\n")
    replace_once(
        project / "Dockerfile",
        f'org.opencontainers.image.title="{root_name}"',
        f'org.opencontainers.image.title="{slug}"',
    )
    # The name elsewhere: the image in commands (README, Dockerfile), the lock files' notes.
    for path in walk(project):
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue  # not text
            if root_name in text:
                path.write_text(text.replace(root_name, slug), encoding="utf-8")


def replace_once(path: Path, old: str | re.Pattern[str], new: str) -> None:
    text = path.read_text(encoding="utf-8")
    pattern = old if isinstance(old, re.Pattern) else re.compile(re.escape(old))
    found = len(pattern.findall(text))
    if found != 1:
        expected = old if isinstance(old, str) else old.pattern
        raise TemplateError(f"{path.name}: expected {expected!r} once, found it {found} times")
    path.write_text(pattern.sub(lambda _: new, text), encoding="utf-8")


def toml_string(text: str) -> str:
    """A TOML basic string (the answers are one line each: the pre-generation hook checks)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


if __name__ == "__main__":
    try:
        main(Path.cwd(), json.loads(r"""{{ cookiecutter | jsonify }}"""))
    except TemplateError as exc:
        print(f"cannot generate the project: {exc}", file=sys.stderr)
        sys.exit(1)
