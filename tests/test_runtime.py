"""The runtime in-process: exit codes and warnings that need no real signal."""

from __future__ import annotations

import io
import json
import os

import pytest
import trio

from service import WorkerContext, logs, runtime, worker
from service.config import Settings
from service.registry import ServiceConfig
from service.supervision import Supervisor
from service.testing import running_service
from service.worker import ConfiguredWorker, NoSettings

pytestmark = pytest.mark.usefixtures("restore_logging")


@worker(grace=20)
async def patient(ctx: WorkerContext, *, task_status: object = None) -> None:
    raise AssertionError("not run in these tests")


def config(*specs: object, **settings: object) -> ServiceConfig:
    # The ops server takes any free port: tests run side by side.
    return ServiceConfig(
        Settings.model_validate({"ops_port": 0, **settings}),
        tuple(ConfiguredWorker(spec, NoSettings()) for spec in specs),  # type: ignore[arg-type]
    )


def test_an_internal_error_exits_1_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(self: Supervisor, resources: object) -> None:
        raise RuntimeError("supervisor bug")

    monkeypatch.setattr(Supervisor, "run", broken)
    out = io.StringIO()
    logs.configure(log_format="json", stream=out)
    assert runtime.run(config()) == 1
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    crashed = next(line for line in lines if line["event"] == "service.crashed")
    assert crashed["exception"][0]["exc_value"] == "supervisor bug"
    assert lines[-1] == {**lines[-1], "event": "service.stopped", "exit_code": 1}


def test_warns_when_the_graces_add_up_past_the_shutdown_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def stop_at_once(self: Supervisor, resources: object) -> None:
        return

    monkeypatch.setattr(Supervisor, "run", stop_at_once)
    out = io.StringIO()
    logs.configure(log_format="json", stream=out)
    assert runtime.run(config(patient, shutdown_timeout=10)) == 0
    events = {json.loads(line)["event"]: json.loads(line) for line in out.getvalue().splitlines()}
    warning = events["service.shutdown_timeout_too_short"]
    assert warning["total_grace_s"] == 20
    assert warning["shutdown_timeout_s"] == 10


def test_warns_when_no_worker_is_selected(monkeypatch: pytest.MonkeyPatch) -> None:
    async def stop_at_once(self: Supervisor, resources: object) -> None:
        return

    monkeypatch.setattr(Supervisor, "run", stop_at_once)
    out = io.StringIO()
    logs.configure(log_format="json", stream=out)
    runtime.run(config())
    assert "service.no_workers" in out.getvalue()


async def test_a_service_in_a_test_process_never_arms_the_forced_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its stop running past the shutdown timeout must not `os._exit(3)` the test process."""
    exits: list[int] = []
    monkeypatch.setattr(os, "_exit", exits.append)  # what the watchdog's thread would call

    @worker(grace=1)
    async def deaf(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep_forever()  # ignores the soft stop: its grace runs out, 10x the timeout

    async with running_service(deaf, shutdown_timeout=0.1) as running:
        await running.service.supervisor.ready.wait()
    assert exits == []
    [runner] = running.service.supervisor.runners
    assert runner.last_exit is not None
    assert runner.last_exit.outcome == "cancelled"  # stopped by the two-phase stop instead
