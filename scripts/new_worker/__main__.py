"""`./scripts/new-worker NAME --kind KIND`: a module of the project and its test.

Three kinds are workers, each the shape of one of the examples (`ticker`, `consumer`,
`poller`); `resource` is a client shared by workers and jobs, `job` a typed job type. Each
kind is kept beside this file as a working module whose worker, resource or job is named
`my_worker` (see `KINDS`), with its test, so that ruff and mypy check the shapes themselves.
Scaffolding copies them under the new name into `service/workers/`, the project's
modules, and `tests/`. They import none of the examples, and nothing of `service` but its
public face (`service`, and `service.testing` in the tests): a service generated without the
examples can use every kind, and a template update cannot break them.

A name is refused (exit 2) unless it can be run and configured by it: a lowercase Python
identifier that is no keyword or built-in, not a setting of the service itself (its config
section would collide), not a job type that exists (for a job), not a name the new module
already uses, and not the name of a file that exists.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import keyword
import re
import subprocess
import sys
from pathlib import Path

from service import jobs, resources
from service.config import CONFIG_FILE_VARIABLE, ENV_PREFIX, Settings
from service.exit_codes import EXIT_USAGE
from service.registry import import_manifest

SHAPES = Path(__file__).resolve().parent
ROOT = SHAPES.parents[1]
#: Each kind: the stem of its shape beside this file (a resource's is `client`, since a module
#: `resource` here would shadow the standard library's), and what it is for.
KINDS = {
    "ticker": ("ticker", "a worker doing periodic work"),
    "consumer": ("consumer", "a worker consuming a websocket stream"),
    "poller": ("poller", "a worker polling a source for work"),
    "resource": ("client", "a client that workers and jobs share (uses=[NAME], ctx.use(NAME))"),
    "job": ("job", "a typed job type that workers defer and a job poller runs"),
}
WORKER_KINDS = ("ticker", "consumer", "poller")
PLACEHOLDER = "my_worker"
#: Keeps the generated lines within the line length (the name appears in indented code).
MAX_LENGTH = 40

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


class Refused(Exception):
    """The name cannot be used; the message says why."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./scripts/new-worker",
        description="Write service/workers/NAME.py and tests/test_worker_NAME.py.",
    )
    parser.add_argument(
        "name",
        help="the worker's, resource's or job type's name; a worker's or resource's config "
        "section too (SERVICE_<NAME>__<KEY>)",
    )
    parser.add_argument(
        "--kind",
        required=True,
        choices=KINDS,
        help="; ".join(f"{kind}: {what}" for kind, (_, what) in KINDS.items()),
    )
    args = parser.parse_args(argv)
    name: str = args.name
    shape, _ = KINDS[args.kind]
    targets = {
        ROOT / "service" / "workers" / f"{name}.py": SHAPES / f"{shape}.py",
        ROOT / "tests" / f"test_worker_{name}.py": SHAPES / f"test_{shape}.py",
    }
    try:
        check_name(name, args.kind)
        rendered = {target: render(shape, name) for target, shape in targets.items()}
        for target, text in rendered.items():
            check_unused(name, text, target)
        check_free(name)
    except Refused as exc:
        print(f"new-worker: cannot use {name!r}: {exc}", file=sys.stderr)
        return EXIT_USAGE

    for target, text in rendered.items():
        target.write_text(text, encoding="utf-8")
    # The name's length and spelling move lines past the limit and imports out of order: let
    # ruff sort and wrap them as it would any code.
    paths = [str(target) for target in rendered]
    ruff = [sys.executable, "-m", "ruff"]
    subprocess.run([*ruff, "check", "--quiet", "--fix", "--select", "I", *paths], check=True)
    subprocess.run([*ruff, "format", "--quiet", *paths], check=True)
    for target in rendered:
        print(f"wrote {target.relative_to(ROOT)}")
    print(
        f"import it in service/app.py, so that every process knows it:\n"
        f"    from service.workers import {name}  # noqa: F401"
    )
    if args.kind in WORKER_KINDS:
        print(
            f"and add {name!r} to WORKERS there to run it by default "
            f"(or run it alone: SERVICE_WORKERS={name} ./scripts/run)"
        )
    return 0


def check_name(name: str, kind: str) -> None:
    if not _NAME.match(name):
        raise Refused("a name is lowercase letters, digits and _, starting with a letter")
    if len(name) > MAX_LENGTH:
        raise Refused(f"longer than {MAX_LENGTH} characters")
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise Refused("it is a Python keyword")
    if hasattr(builtins, name):
        raise Refused("it is a Python built-in")
    import_manifest()  # the project's resources, whose sections are taken too
    sections = {
        *Settings.model_fields,
        *resources.REGISTERED,
        CONFIG_FILE_VARIABLE.removeprefix(ENV_PREFIX).lower(),
    }
    if name in sections:
        raise Refused(
            f"{ENV_PREFIX}{name.upper()} is a setting of the service itself; the worker's "
            "config section would collide with it"
        )
    if name in {"service", "tests"}:
        raise Refused("it is a package of this project")
    if kind == "job" and name in jobs.REGISTERED:
        raise Refused("a job type of that name exists")


def render(shape: Path, name: str) -> str:
    """The shape's text with the placeholder's three spellings replaced by the name's."""
    camel = "".join(part.capitalize() for part in name.split("_"))
    return (
        shape.read_text(encoding="utf-8")
        .replace("MyWorker", camel)
        .replace(PLACEHOLDER.upper(), name.upper())
        .replace(PLACEHOLDER, name)
    )


def check_unused(name: str, text: str, target: Path) -> None:
    """The name must not be bound twice at the top of a module, e.g. `fetch` or `trio`."""
    bound = _top_level_names(ast.parse(text, filename=str(target)))
    if bound.count(name) > 1:
        raise Refused(f"the shape already uses that name in {target.relative_to(ROOT)}")


def check_free(name: str) -> None:
    for taken in (
        ROOT / "service" / "workers" / f"{name}.py",
        ROOT / "service" / "workers" / name,
        ROOT / "tests" / f"test_worker_{name}.py",
    ):
        if taken.exists():
            raise Refused(f"{taken.relative_to(ROOT)} exists")


def _top_level_names(module: ast.Module) -> list[str]:
    names: list[str] = []
    for node in module.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.extend((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.extend(t.id for t in targets if isinstance(t, ast.Name))
    return names


if __name__ == "__main__":
    sys.exit(main())
