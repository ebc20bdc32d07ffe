"""The operations surface of a real `python -m service`: the port it reports, readiness that
drains before any worker stops, a stall reported by the watchdog, the task tree on SIGUSR1."""

from __future__ import annotations

import signal
import socket
import textwrap
from pathlib import Path

import pytest

from service.testing import ServiceProcess, http_get, service_env

WORKERS = """
    import time

    import trio

    from service import WorkerContext, worker


    @worker(grace=30)
    async def deaf(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()  # ignores the soft stop: only the hard cancel ends it


    @worker()
    async def sleeper(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep(0.1)
        time.sleep(1.0)  # a synchronous call on the event loop
        await ctx.stopping.wait()
"""


@pytest.fixture
def workers_dir(tmp_path: Path) -> Path:
    (tmp_path / "ops_workers.py").write_text(textwrap.dedent(WORKERS), encoding="utf-8")
    return tmp_path


async def test_listens_on_the_port_it_reports_and_drains_before_stopping(
    workers_dir: Path,
) -> None:
    env = service_env(workers_dir, SERVICE_WORKERS="ops_workers:deaf")
    assert env["SERVICE_OPS_PORT"] == "0"
    async with ServiceProcess(env) as service:
        await service.wait_for("service.ready")
        [listening] = service.events("ops.listening")  # logged before the workers start
        address = (listening["host"], listening["port"])
        assert listening["host"] == "127.0.0.1"
        assert listening["port"] > 0
        assert (await http_get(address, "/readyz")).status == 200
        service.send(signal.SIGTERM)
        await service.wait_for("service.stopping")
        draining = await http_get(address, "/readyz")
        assert (draining.status, draining.text) == (503, "the service is stopping\n")
        assert (await http_get(address, "/livez")).status == 200
        assert service.events("worker.exited") == []  # the worker is still in its grace
        service.send(signal.SIGINT)
        assert await service.exit_code() == 0


async def test_a_worker_blocking_the_loop_is_reported_as_a_stall(workers_dir: Path) -> None:
    env = service_env(workers_dir, SERVICE_WORKERS="ops_workers:sleeper")
    async with ServiceProcess(env) as service:
        recovered = await service.wait_for("loop.recovered")
        service.send(signal.SIGTERM)
        assert await service.exit_code() == 0
    # Only this stall is the test's: a loaded machine may add others.
    [stalled] = [e for e in service.events("loop.stalled") if e["task"] == "worker:sleeper"]
    assert stalled["blocked_s"] >= 0.25
    stack = stalled["stack"].splitlines()
    assert any(frame.endswith("in sleeper") for frame in stack)
    assert "ops_workers.py" in stack[-1]  # the innermost frame: the time.sleep line
    assert recovered["blocked_s"] >= stalled["blocked_s"]


async def test_sigusr1_writes_the_task_tree_to_the_log(workers_dir: Path) -> None:
    env = service_env(workers_dir, SERVICE_WORKERS="ops_workers:deaf")
    async with ServiceProcess(env) as service:
        await service.wait_for("service.ready")
        service.send(signal.SIGUSR1)
        dump = await service.wait_for("tasks.dump")
        service.send(signal.SIGTERM)
        service.send(signal.SIGINT)
        assert await service.exit_code() == 0
    assert any("worker:deaf [worker deaf, up" in line for line in dump["tree"])


async def test_a_port_in_use_is_one_clear_line_and_exit_2(workers_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = service_env(
            workers_dir, SERVICE_WORKERS="ops_workers:deaf", SERVICE_OPS_PORT=str(port)
        )
        async with ServiceProcess(env) as service:
            assert await service.exit_code() == 2
    [failed] = service.events("ops.failed")
    assert failed["error"] == f"cannot listen on 127.0.0.1:{port}: Address already in use"
    assert service.events("worker.started") == []
    assert not any("Traceback" in line for line in service.text)
