"""`./scripts/run --reload`: the reloader as a real process, restarting a real service when a
real file changes (scripts/reload.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Self

import pytest
import trio

from service.testing import service_env
from service.testing.process import ROOT, LogLines

WORKERS = """
    import trio

    from service import WorkerContext, worker


    @worker(grace=2)
    async def idle(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await ctx.stopping.wait()


    @worker(grace=30)
    async def deaf(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()
"""

LIFETIME = ("service.ready", "service.stopping", "service.stopped")


class Reloader:
    """The reloader (`scripts/reload.py --watch DIR`, or `command`) with its and its services'
    JSON lines, running the `workers` found in DIR. Leaving the block stops what is left."""

    def __init__(self, watched: Path, workers: str, *command: str, patience: float = 20.0) -> None:
        self._command = list(command) or [
            sys.executable,
            "scripts/reload.py",
            "--watch",
            str(watched),
        ]
        self._env = service_env(watched, SERVICE_WORKERS=workers)
        self._patience = patience
        self.output = LogLines()
        self._cursor = 0
        self._process: trio.Process | None = None

    async def __aenter__(self) -> Self:
        self._process = await trio.lowlevel.open_process(
            self._command,
            env=self._env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with trio.CancelScope(shield=True):
            if self.process.returncode is None:  # a test that failed half-way
                # Killed, the reloader would leave its service running: ask it to stop that.
                self.process.send_signal(signal.SIGTERM)
                with trio.move_on_after(self._patience):
                    await self.process.wait()
                if self.process.returncode is None:
                    self.process.kill()
            await self.process.wait()
            assert self.process.stdout is not None
            await self.process.stdout.aclose()

    @property
    def process(self) -> trio.Process:
        assert self._process is not None
        return self._process

    async def wait_for(self, event: str) -> dict[str, Any]:
        """The first line with this event after the last one waited for, reading as needed;
        fail, showing the output, after `patience` seconds."""
        with trio.move_on_after(self._patience):
            while True:
                for index in range(self._cursor, len(self.output.lines)):
                    if self.output.lines[index].get("event") == event:
                        self._cursor = index + 1
                        return self.output.lines[index]
                if not await self._read():
                    break
        raise AssertionError(f"no {event!r} in output:\n" + "\n".join(self.output.text))

    async def wait_for_each(self, *events: str) -> dict[str, dict[str, Any]]:
        """The first line of each of these events after the last one waited for, in whatever
        order they come (the service may be ready before the watcher says it watches)."""
        found: dict[str, dict[str, Any]] = {}
        start = self._cursor
        for event in events:
            self._cursor = start
            found[event] = await self.wait_for(event)
        self._cursor = max(start, *(self.output.lines.index(line) + 1 for line in found.values()))
        return found

    async def exit_code(self) -> int:
        with trio.fail_after(self._patience):
            while await self._read():
                pass
            return await self.process.wait()

    def events(self, *names: str) -> list[dict[str, Any]]:
        return [line for line in self.output.lines if line.get("event") in names]

    async def _read(self) -> bool:
        assert self.process.stdout is not None
        chunk = await self.process.stdout.receive_some()
        if not chunk:
            return False
        self.output.feed(bytes(chunk))
        return True


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "reload_workers.py").write_text(textwrap.dedent(WORKERS), encoding="utf-8")
    return tmp_path


async def test_a_source_change_restarts_the_service_after_its_two_phase_stop(
    project: Path,
) -> None:
    module, settings = project / "reload_workers.py", project / "service.toml"
    async with Reloader(project, "reload_workers:idle") as reloader:
        await reloader.wait_for_each("reload.watching", "service.ready")
        # Changes outside the watched set first: were any of them taken, it would be in this
        # batch or an earlier one, and show in `reload.changed` below.
        (project / "var").mkdir()
        (project / "var" / "service.db").write_bytes(b"SQLite format 3\0")
        (project / "notes.txt").write_text("not source\n", encoding="utf-8")
        module.write_text(module.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
        await reloader.wait_for("service.stopping")
        await reloader.wait_for("service.ready")
        settings.write_text("[jobs]\n", encoding="utf-8")
        await reloader.wait_for("service.stopping")
        await reloader.wait_for("service.ready")
        reloader.process.send_signal(signal.SIGTERM)
        assert await reloader.exit_code() == 0

    changes = [line["files"] for line in reloader.events("reload.changed")]
    assert changes == [[str(module)], [str(settings)]]
    # Three services, one after the other, each stopped by one SIGTERM and to the end.
    assert [line["event"] for line in reloader.events(*LIFETIME)] == list(LIFETIME) * 3
    assert [line["signal"] for line in reloader.events("service.stopping")] == ["SIGTERM"] * 3
    assert [line["exit_code"] for line in reloader.events("service.stopped")] == [0] * 3


async def test_a_service_that_exits_by_itself_waits_for_the_next_change(project: Path) -> None:
    module = project / "reload_workers.py"
    working = module.read_text(encoding="utf-8")
    module.write_text(working + "raise RuntimeError('half-written')\n", encoding="utf-8")
    async with Reloader(project, "reload_workers:idle") as reloader:
        exited = (await reloader.wait_for_each("reload.watching", "reload.exited"))["reload.exited"]
        assert exited["exit_code"] == 2  # the workers could not be imported: a usage error
        module.write_text(working, encoding="utf-8")
        await reloader.wait_for("service.ready")
        reloader.process.send_signal(signal.SIGINT)
        assert await reloader.exit_code() == 0
    assert len(reloader.events("service.ready")) == 1


async def test_a_second_signal_to_the_reloader_is_the_services_second_signal(
    project: Path,
) -> None:
    async with Reloader(project, "reload_workers:deaf", patience=10) as reloader:  # < 30 s grace
        await reloader.wait_for_each("reload.watching", "service.ready")
        reloader.process.send_signal(signal.SIGINT)
        await reloader.wait_for("service.stopping")
        reloader.process.send_signal(signal.SIGINT)
        assert await reloader.exit_code() == 0
    [exited] = reloader.events("worker.exited")
    assert exited["outcome"] == "cancelled"
    assert exited["cancel_reason"] == "second signal (SIGTERM) during shutdown"


async def test_scripts_run_reload_watches_the_checkout_and_passes_signals_on(
    project: Path,
) -> None:
    async with Reloader(project, "reload_workers:idle", "./scripts/run", "--reload") as reloader:
        found = await reloader.wait_for_each("reload.watching", "service.ready")
        watching = found["reload.watching"]
        reloader.process.send_signal(signal.SIGTERM)  # to the script: it `exec`s the reloader
        assert await reloader.exit_code() == 0
    assert watching["paths"] == [str(ROOT)]
    assert [line["event"] for line in reloader.events(*LIFETIME)] == list(LIFETIME)
