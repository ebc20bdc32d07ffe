"""The docs cannot rot: every Python block of README.md and docs/ is checked by the suite.

For whoever writes the docs:

- Every ```python block is a module of its own: it imports what it uses, and it passes
  `mypy --strict` under the project's configuration. All blocks go through one mypy run, in a
  copy of the project; a failure names the Markdown file and line.
- `<!-- docs: file PATH -->` on a line before a block (blank lines may come between) says the
  block is the project's file PATH (`service/workers/reporter.py`, `service/app.py`): it is
  written there, in the copy, before anything is checked, so that other blocks can import it.
  Each path once across the docs.
- `<!-- docs: run -->` before a block runs it as well, in the copy of the project. A block
  that defines `test_*` functions is a test module in `tests/` (the project's fixtures and
  leak checks apply, as to any test): all of them go through one pytest run, so what they
  declare (a resource, a job type, a metric) needs a name no other block uses. Any other
  block runs as a script of its own, `python block.py`, which must exit 0. The two markers
  combine, one per line.
- Whatever is not Python takes its own info string: `console`, `sh`, `toml`, `text`, `json`.
  A block tagged otherwise (or not at all) that parses as Python and holds an import, a def
  or a class is refused: tag it `python`. So is a marker this module does not know, or one
  that no Python block follows.

`pytest -k docs` selects these tests.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]

PYTHON = {"python", "py", "python3"}
_FENCE = re.compile(r"(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*\Z")
_MARKER = re.compile(r"\s*<!--\s*docs:\s*(?P<body>.*?)\s*-->\s*\Z")
_MYPY_LINE = re.compile(r"(?P<path>[^:\n]+\.py):(?P<line>\d+): (?P<rest>(?:error|note): .*)")
#: Long enough for a slow machine; only a hang reaches it.
RUN_TIMEOUT_S = 300
#: mypy's own cache of the project, which `./scripts/test` has just warmed: checking the
#: blocks then takes a second, not the ten that checking `service` whole would.
MYPY_CACHE = ROOT / ".mypy_cache"


@dataclass(frozen=True)
class Block:
    """A fenced code block of a page, and what its markers ask of it."""

    page: str  # relative to the project's root, as a reader finds it
    line: int  # of the opening fence
    language: str
    code: str
    file: str | None = None
    run: bool = False

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def is_python(self) -> bool:
        return self.language in PYTHON

    @property
    def defines_tests(self) -> bool:
        return any(
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")
            for node in ast.parse(self.code).body
        )

    @property
    def path(self) -> str:
        """Where the block is written in the copy of the project."""
        if self.file is not None:
            return self.file
        name = re.sub(r"\W", "_", f"{self.page.removesuffix('.md')}_{self.line}")
        if self.defines_tests:
            return f"tests/test_docs_{name}.py"
        return f"docs_blocks/{name}.py"


def pages(root: Path) -> list[Path]:
    found = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    return [page for page in found if page.is_file()]


def read_page(root: Path, page: Path) -> tuple[list[Block], list[str]]:
    """The page's code blocks, and what is wrong with its markers and fences."""
    name = str(page.relative_to(root))
    blocks: list[Block] = []
    problems: list[str] = []
    markers: list[tuple[int, str]] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        marker = _MARKER.match(line)
        fence = _FENCE.match(line)
        if marker:
            markers.append((number, marker.group("body")))
        elif fence:
            start, indent = number, len(fence.group("indent"))
            opening = fence.group("fence")
            body = []
            while number < len(lines) and not _closes(lines[number], opening):
                text = lines[number]
                body.append(text[indent:] if not text[:indent].strip() else text.lstrip())
                number += 1
            if number == len(lines):
                problems.append(f"{name}:{start}: the code block is never closed")
            number += 1
            block = Block(name, start, fence.group("info").lower(), "\n".join(body) + "\n")
            block, wrong = _apply(block, markers)
            problems.extend(wrong)
            markers = []
            if block.is_python:
                try:
                    ast.parse(block.code)
                except SyntaxError as exc:
                    problems.append(f"{name}:{start + (exc.lineno or 0)}: not Python: {exc.msg}")
                    continue
            elif _looks_like_python(block.code):
                problems.append(
                    f"{name}:{start}: this ```{block.language} block is Python: tag it ```python,"
                    " so that it is checked"
                )
            blocks.append(block)
        elif line.strip() and markers:
            problems.extend(
                f"{name}:{at}: no Python block follows this marker" for at, _ in markers
            )
            markers = []
    problems.extend(f"{name}:{at}: no Python block follows this marker" for at, _ in markers)
    return blocks, problems


def _closes(line: str, opening: str) -> bool:
    """Whether `line` closes a fence opened with `opening` (the same character, as many)."""
    fence = line.strip()
    return len(fence) >= len(opening) and set(fence) == {opening[0]}


def _apply(block: Block, markers: list[tuple[int, str]]) -> tuple[Block, list[str]]:
    problems = []
    file, run = None, False
    for at, body in markers:
        where = f"{block.page}:{at}"
        if not block.is_python:
            problems.append(f"{where}: no Python block follows this marker")
        elif body == "run":
            run = True
        elif body.startswith("file "):
            file = body.removeprefix("file ").strip()
            path = PurePosixPath(file)
            if path.is_absolute() or ".." in path.parts or path.suffix != ".py":
                problems.append(f"{where}: {file!r} is not a relative path to a .py file")
        else:
            problems.append(f"{where}: unknown marker {body!r} (known: run, file PATH)")
    return Block(block.page, block.line, block.language, block.code, file, run), problems


def _looks_like_python(code: str) -> bool:
    try:
        module = ast.parse(code)
    except SyntaxError:
        return False
    kinds = ast.Import | ast.ImportFrom | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    return any(isinstance(node, kinds) for node in ast.walk(module))


def read_docs(root: Path) -> tuple[list[Block], list[str]]:
    """Every code block of README.md and docs/, and every problem with them."""
    blocks: list[Block] = []
    problems: list[str] = []
    for page in pages(root):
        found, wrong = read_page(root, page)
        blocks.extend(found)
        problems.extend(wrong)
    python = [block for block in blocks if block.is_python]
    seen: dict[str, Block] = {}
    for block in python:
        if block.path in seen:
            problems.append(f"{block.where}: {block.path} is already {seen[block.path].where}")
        seen[block.path] = block
    return python, problems


def lay_out(source: Path, destination: Path, blocks: list[Block]) -> Path:
    """A copy of the project at `source` (its code, tests and configuration) with every block
    written into it: where the blocks are checked and run, never in the project itself."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        inside = Path(directory)
        return {
            name
            for name in names
            if name == "__pycache__" or (inside / name) == source / "tests" / "template"
        }

    destination.mkdir(parents=True, exist_ok=True)
    for name in ("service", "tests"):
        shutil.copytree(source / name, destination / name, ignore=ignore, dirs_exist_ok=True)
    shutil.copy(source / "pyproject.toml", destination / "pyproject.toml")
    for block in blocks:
        target = destination / block.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.code, encoding="utf-8")
    return destination


def clean_env(project: Path) -> dict[str, str]:
    """This environment without the running suite's settings, the copy on the path."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SERVICE_", "PYTEST_", "PYTHONPATH"))
    }
    env["PYTHONPATH"] = str(project)
    return env


def type_errors(project: Path, blocks: list[Block], cache: Path) -> list[str]:
    """One `mypy --strict` run over the blocks laid out in `project`: its complaints, each
    at the page and line it belongs to."""
    by_path = {block.path: block for block in blocks}
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            "pyproject.toml",
            "--cache-dir",
            str(cache),
            "--no-error-summary",
            "--hide-error-context",
            *sorted(by_path),
        ],
        cwd=project,
        env=clean_env(project),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    complaints = []
    for line in checked.stdout.splitlines():
        found = _MYPY_LINE.fullmatch(line)
        block = by_path.get(found.group("path")) if found else None
        if found and block is not None:
            at = block.line + int(found.group("line"))
            complaints.append(f"{block.page}:{at}: {found.group('rest')}")
        elif line.strip():
            complaints.append(line)
    if checked.returncode != 0 and not complaints:
        complaints.append(f"mypy exited {checked.returncode}: {checked.stderr}")
    return sorted(complaints, key=_position)


def _position(complaint: str) -> tuple[str, int]:
    """A complaint's page and line, to list them in reading order."""
    page, _, rest = complaint.partition(":")
    line = rest.partition(":")[0]
    return (page, int(line) if line.isdigit() else 0)


def run_failures(project: Path, blocks: list[Block]) -> list[str]:
    """Run the blocks marked to run, laid out in `project`: what failed, at its page and line.

    The test blocks go through one pytest run (a process each would cost seconds apiece);
    each other block is a script of its own.
    """
    failures = []
    tests = [block for block in blocks if block.run and block.defines_tests]
    if tests:
        done = _run(
            project,
            "-m",
            "pytest",
            "-q",
            "-rfE",
            "-p",
            "no:cacheprovider",
            "--continue-on-collection-errors",
            *(block.path for block in tests),
        )
        if done.returncode != 0:
            summary = [
                line for line in done.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))
            ]
            culprits = [
                f"{block.where}: {line.split()[0].lower()}: {line.split()[1]}"
                for block in tests
                for line in summary
                if line.split()[1].split("::")[0] == block.path
            ]
            failures.extend(culprits or [f"pytest exited {done.returncode}"])
            failures.append(_tail(done))
    for block in blocks:
        if block.run and not block.defines_tests:
            done = _run(project, block.path)
            if done.returncode != 0:
                failures.append(f"{block.where}: the block failed (exit {done.returncode}):")
                failures.append(_tail(done))
    return failures


def _run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=project,
        env=clean_env(project),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def _tail(done: subprocess.CompletedProcess[str]) -> str:
    return (done.stdout + done.stderr)[-10_000:]


BLOCKS, PROBLEMS = read_docs(ROOT)


def test_docs_markers_and_code_blocks_are_well_formed() -> None:
    assert PROBLEMS == [], "\n".join(PROBLEMS)


def test_docs_there_are_python_blocks_to_check() -> None:
    assert BLOCKS, "no ```python block found: is the parser broken?"


def test_docs_python_blocks_pass_mypy_strict(tmp_path: Path) -> None:
    project = lay_out(ROOT, tmp_path / "project", BLOCKS)
    complaints = type_errors(project, BLOCKS, MYPY_CACHE)
    assert complaints == [], "\n".join(complaints)


def test_docs_runnable_blocks_run(tmp_path: Path) -> None:
    failures = run_failures(lay_out(ROOT, tmp_path / "project", BLOCKS), BLOCKS)
    assert failures == [], "\n".join(failures)


# The checker itself: a page that misuses the API must fail, at its own line.

RENAMED = """\
# A page

Fine:

```python
from service import WorkerContext, worker
```

A method renamed since:

```python
import trio

from service import WorkerContext, worker


@worker()
async def reporter(
    ctx: WorkerContext,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    task_status.started()
    async for tick in ctx.evry(5.0):
        ctx.log.info("tick", number=tick.number)
```

<!-- docs: run -->

```python
from service import wroker
```
"""


def test_docs_checker_catches_a_renamed_api(tmp_path: Path) -> None:
    docs = tmp_path / "docs-root"
    (docs / "docs").mkdir(parents=True)
    (docs / "docs" / "page.md").write_text(RENAMED, encoding="utf-8")
    blocks, problems = read_docs(docs)
    assert problems == []
    assert [(block.line, block.run) for block in blocks] == [(5, False), (11, False), (30, True)]

    project = lay_out(ROOT, tmp_path / "project", blocks)
    complaints = type_errors(project, blocks, MYPY_CACHE)
    assert any(
        line.startswith("docs/page.md:24: error:") and "evry" in line for line in complaints
    ), complaints
    assert any(
        line.startswith("docs/page.md:31: error:") and "wroker" in line for line in complaints
    ), complaints
    assert not any(line.startswith("docs/page.md:6:") for line in complaints), complaints

    [failure, output] = run_failures(project, blocks)
    assert failure == "docs/page.md:30: the block failed (exit 1):"
    assert "ImportError" in output


def test_docs_checker_runs_the_test_blocks_with_pytest(tmp_path: Path) -> None:
    passing = Block(
        "docs/a.md", 3, "python", "async def test_passes() -> None:\n    pass\n", run=True
    )
    failing = Block(
        "docs/b.md",
        7,
        "python",
        "import trio\n\n\nasync def test_sleeps() -> None:\n    await trio.sleep(0)\n"
        "    assert False, 'the block ran'\n",
        run=True,
    )
    [failure, output] = run_failures(
        lay_out(ROOT, tmp_path / "project", [passing, failing]), [passing, failing]
    )
    assert failure == "docs/b.md:7: failed: tests/test_docs_docs_b_7.py::test_sleeps"
    assert "the block ran" in output
    assert "1 failed, 1 passed" in output


@pytest.mark.parametrize(
    ("page", "problem"),
    [
        ("```text\nimport trio\n```\n", "page.md:1: this ```text block is Python"),
        ("```\nclass A: pass\n```\n", "page.md:1: this ``` block is Python"),
        ("<!-- docs: run -->\nprose\n", "page.md:1: no Python block follows this marker"),
        ("<!-- docs: run -->\n```toml\na = 1\n```\n", "page.md:1: no Python block follows"),
        ("<!-- docs: runn -->\n```python\nx = 1\n```\n", "page.md:1: unknown marker 'runn'"),
        ("<!-- docs: file /etc/x.py -->\n```python\n```\n", "'/etc/x.py' is not a relative"),
        ("```python\nx = (\n```\n", "page.md:2: not Python"),
        ("```python\nx = 1\n", "page.md:1: the code block is never closed"),
    ],
)
def test_docs_checker_refuses_what_it_could_not_check(
    tmp_path: Path, page: str, problem: str
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text(page, encoding="utf-8")
    _, problems = read_docs(tmp_path)
    assert any(problem in found for found in problems), problems


def test_docs_checker_keeps_console_toml_and_log_lines_apart_from_python(tmp_path: Path) -> None:
    page = (
        "```console\n./scripts/run\n```\n\n```toml\nworkers = ['a']\n\n[ticker]\ninterval = 2\n```"
        '\n\n```\n{"event": "tick", "worker": "ticker"}\n```\n'
    )
    (tmp_path / "README.md").write_text(page, encoding="utf-8")
    blocks, problems = read_docs(tmp_path)
    assert (blocks, problems) == ([], [])
