"""Generating projects from this checkout, and running what they ship, for the template's tests.

Everything runs as a user would run it: the `cookiecutter` and `cruft` command lines, the
generated project's own scripts, `python -m service` from its own `.venv`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Self

from service.testing.process import LogLines

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIR = ROOT / "{{cookiecutter.project_slug}}"
#: The root's own identity, which every generated project replaces with its own.
ROOT_PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]

#: Answers a project must carry exactly as given: unicode, quotes, a backslash, braces.
AWKWARD = {
    "project_name": 'Ünïcode "Quoted" Sérvice',
    "project_slug": "unicode-quoted-service",
    "description": "Says \"hi\" & 'bye' — with a \\backslash, {braces} and ünïcode",
    "author_name": 'Zoë O\'Brien "ZOB"',
    "author_email": "zoe@example.org",
    "include_examples": "no",
}

#: Generous: a deadline that only a hang reaches. Nothing here asserts on durations.
COMMAND_TIMEOUT_S = 900
SERVICE_PATIENCE_S = 60


def cookiecutter_json() -> dict[str, Any]:
    return json.loads((ROOT / "cookiecutter.json").read_text(encoding="utf-8"))


def load_hook(name: str) -> ModuleType:
    """A hook as a module: its Jinja-rendered answers are only read when run as a script."""
    spec = importlib.util.spec_from_file_location(f"hook_{name}", ROOT / "hooks" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


POST_GEN = load_hook("post_gen_project")


def entries(directory: Path) -> list[Path]:
    """A directory's own files and directories: what .gitignore ignores (caches) is not."""
    rules = POST_GEN.ignore_rules((ROOT / ".gitignore").read_text(encoding="utf-8"))
    return sorted(
        path
        for path in directory.iterdir()
        if path.name != ".git" and not POST_GEN.is_ignored(path, ROOT, rules)
    )


def clean_env(state: Path, **extra: str) -> dict[str, str]:
    """This environment without what belongs to the running suite, plus `extra`.

    No SERVICE_* setting and no pytest or xdist variable leaks into a generated project's own
    runs; cookiecutter (also inside cruft) keeps its replay files in `state`, not in the home
    directory.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SERVICE_", "PYTEST_", "VIRTUAL_ENV"))
    }
    state.mkdir(parents=True, exist_ok=True)
    config = state / "cookiecutterrc"
    config.write_text(
        f"cookiecutters_dir: {state / 'cookiecutters'}\nreplay_dir: {state / 'replay'}\n",
        encoding="utf-8",
    )
    env["COOKIECUTTER_CONFIG"] = str(config)
    env.update(extra)
    return env


def run(
    command: list[str | Path], cwd: Path, env: dict[str, str], *, expect: int = 0
) -> subprocess.CompletedProcess[str]:
    """Run to the end; a different exit code fails the test, showing the output."""
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == expect, (
        f"{' '.join(map(str, command))} (in {cwd}) exited {done.returncode}, not {expect}:\n"
        f"{done.stdout[-20_000:]}\n{done.stderr[-20_000:]}"
    )
    return done


@contextmanager
def running(
    command: list[str], cwd: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a command with its output going to `log`: commands run side by side this way
    without a pipe filling up. Leaving the block kills it if it still runs."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


def finished(process: subprocess.Popen[bytes], log: Path) -> str:
    """Wait for a command from `running`; any exit code but 0 fails, showing the output."""
    returncode = process.wait(timeout=COMMAND_TIMEOUT_S)
    output = log.read_text(encoding="utf-8", errors="replace")
    assert returncode == 0, (
        f"{' '.join(map(str, process.args))} exited {returncode} ({log}):\n{output[-30_000:]}"
    )
    return output


def bake(output_dir: Path, **answers: str) -> Path:
    """`cookiecutter --no-input` with `key=value` answers; the generated project's path."""
    output_dir.mkdir(parents=True, exist_ok=True)
    env = clean_env(output_dir.with_name(f"{output_dir.name}-cookiecutter"))
    before = set(output_dir.iterdir())
    run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            "--output-dir",
            output_dir,
            ROOT,
            *(f"{key}={value}" for key, value in answers.items()),
        ],
        cwd=output_dir,
        env=env,
    )
    [project] = set(output_dir.iterdir()) - before
    return project


def git_repository_of_this_checkout(destination: Path) -> Path:
    """The working tree as it is, committed to a repository of its own (cruft clones one)."""
    rules = POST_GEN.ignore_rules((ROOT / ".gitignore").read_text(encoding="utf-8"))

    def ignore(directory: str, names: list[str]) -> set[str]:
        return {
            name
            for name in names
            if name == ".git" or POST_GEN.is_ignored(Path(directory, name), ROOT, rules)
        }

    shutil.copytree(ROOT, destination, symlinks=True, ignore=ignore)
    commit_all(destination, "the template")
    return destination


def commit_all(repository: Path, message: str) -> None:
    env = clean_env(
        repository.parent,
        GIT_AUTHOR_NAME="template tests",
        GIT_AUTHOR_EMAIL="template-tests@example.com",
        GIT_COMMITTER_NAME="template tests",
        GIT_COMMITTER_EMAIL="template-tests@example.com",
    )
    if not (repository / ".git").exists():
        run(["git", "init", "--quiet", "--initial-branch=main"], repository, env)
    run(["git", "add", "--all"], repository, env)
    run(["git", "commit", "--quiet", "--message", message], repository, env)


class ServiceProcess:
    """`python -m service` from a generated project's own venv, its JSON log lines read.

    `with ServiceProcess(project, env) as service:`; leaving the block kills it if it still
    runs and closes the pipe. `python`: another interpreter with the same lock file installed
    (this suite's own), where bootstrapping the project's venv would add nothing but time.
    """

    def __init__(self, project: Path, env: dict[str, str], python: Path | None = None) -> None:
        python = python or project / ".venv" / "bin" / "python"
        self._command = [str(python), "-m", "service"]
        self._project = project
        self._env = env
        self.output = LogLines()
        self.lines = self.output.lines
        self.text = self.output.text
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self._process = subprocess.Popen(
            self._command,
            cwd=self._project,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        process = self.process
        if process.poll() is None:
            process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self._process is not None
        return self._process

    def wait_for(self, event: str, **fields: Any) -> dict[str, Any]:
        """The first line with this event (and fields); fail, showing the output, if none."""
        seen = 0
        deadline = time.monotonic() + SERVICE_PATIENCE_S
        while True:
            for line in self.lines[seen:]:
                if line.get("event") == event and all(line.get(k) == v for k, v in fields.items()):
                    return line
            seen = len(self.lines)
            if not self._read(deadline):
                raise AssertionError(f"no {event!r} {fields} in output:\n" + "\n".join(self.text))

    def stop(self) -> int:
        """SIGTERM, then read to the end; the exit code."""
        self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + SERVICE_PATIENCE_S
        while self._read(deadline):
            pass
        return self.process.wait(timeout=max(0.0, deadline - time.monotonic()))

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == event]

    def _read(self, deadline: float) -> bool:
        """One chunk of output; False at the end of it or at the deadline."""
        stdout = self.process.stdout
        assert stdout is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([stdout], [], [], remaining)[0]:
            return False
        chunk = os.read(stdout.fileno(), 65536)
        if not chunk:
            return False
        self.output.feed(chunk)
        return True


#: cruft, as the suite's interpreter runs it.
CRUFT = [sys.executable, "-m", "cruft"]


def cruft_create(template: Path, output_dir: Path, env: dict[str, str], **answers: str) -> None:
    """`cruft create` from `template` (a git repository) with these answers, no questions."""
    run(
        [
            *CRUFT,
            "create",
            "--no-input",
            "--output-dir",
            output_dir,
            "--extra-context",
            json.dumps(answers),
            template,
        ],
        cwd=output_dir.parent,
        env=env,
    )
