"""The public face: what a project imports is `service` (and `service.testing` in tests).

Users copy the examples and the scaffolds, so those import nothing else of `service.*`: an
internal path copied into a project would break at the next template release. And the face
is exactly the documented list, typed well enough that a fake resource needs no `type: ignore`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import service

ROOT = Path(__file__).resolve().parent.parent
COPIED = sorted(
    [
        *(ROOT / "service" / "workers").glob("*.py"),
        *(ROOT / "scripts" / "new_worker").glob("*.py"),
    ]
)
SHAPES_TOOL = ROOT / "scripts" / "new_worker" / "__main__.py"

#: The documented public API (docs/extending.md, CONTRACTS.md section 8).
PUBLIC = {
    "Backoff",
    "ConnectionClosed",
    "Database",
    "DatabaseOutage",
    "DatabaseUnavailable",
    "HandshakeError",
    "JobContext",
    "JobType",
    "JobsSettings",
    "NoSettings",
    "RateLimitedLog",
    "Resource",
    "Resources",
    "RestartType",
    "Tick",
    "WebSocketConnection",
    "WorkerContext",
    "WorkerSpec",
    "connect_websocket",
    "db",
    "every",
    "job",
    "job_poller",
    "metrics",
    "new_trace_id",
    "resource",
    "split_url",
    "unit_of_work",
    "worker",
}


def internal_imports(path: Path) -> list[str]:
    """`service.<internal>` modules a file imports (a generated `service.workers.x` is fine:
    that is the project's own module, imported by its test)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.extend(
            name
            for name in names
            if name.startswith("service.")
            and name != "service.testing"
            and not name.startswith("service.workers.")
        )
    return found


@pytest.mark.parametrize("path", [p for p in COPIED if p != SHAPES_TOOL], ids=lambda p: p.name)
def test_examples_and_scaffolds_import_only_the_public_face(path: Path) -> None:
    assert internal_imports(path) == []


def test_the_checker_catches_an_internal_import(tmp_path: Path) -> None:
    copied = tmp_path / "copied.py"
    copied.write_text(
        "from service import worker\nfrom service.jobs.table import JobTable\n"
        "import service.resources.sqlite\nfrom service.testing import supervised\n",
        encoding="utf-8",
    )
    assert internal_imports(copied) == ["service.jobs.table", "service.resources.sqlite"]


def test_the_public_api_is_exactly_the_documented_list() -> None:
    assert set(service.__all__) == PUBLIC
    assert all(hasattr(service, name) for name in PUBLIC)


TYPED_USE = """
    from collections.abc import AsyncIterator
    from typing import assert_type

    import trio
    from pydantic import BaseModel

    from service import JobContext, WorkerContext, job, resource, worker
    from service.testing import provide


    class Client:
        async def send(self, text: str) -> None: ...


    class Fake(Client):
        pass


    @resource()
    async def client() -> AsyncIterator[Client]:
        yield Client()


    class Alert(BaseModel):
        city: str


    @job(uses=[client])
    async def alert(payload: Alert, ctx: JobContext) -> None:
        assert_type(ctx.use(client), Client)


    @worker(uses=[client])
    async def sender(
        ctx: WorkerContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        assert_type(ctx.use(client), Client)


    fake = provide(client, Fake())
    wrong = provide(client, "not a client")
"""


def test_resources_are_typed_through_use_and_provide(tmp_path: Path) -> None:
    module = tmp_path / "typed_use.py"
    source = textwrap.dedent(TYPED_USE)
    module.write_text(source, encoding="utf-8")
    # In a process of its own: mypy's memory would otherwise stay in this worker's heap (and
    # blur the soak test's measure of resident memory).
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-incremental"]
    checked = subprocess.run(
        [*mypy, "--cache-dir", str(tmp_path / "cache"), str(module)],
        capture_output=True,
        text=True,
        check=False,
    )
    out, status = checked.stdout, checked.returncode
    errors = [line for line in out.splitlines() if ": error:" in line]
    # Exactly one error: the fake that is not a Client. `use` returns what was yielded.
    assert len(errors) == 1, out
    wrong = source.splitlines().index('wrong = provide(client, "not a client")') + 1
    assert f"typed_use.py:{wrong}: error:" in errors[0]
    assert status == 1
