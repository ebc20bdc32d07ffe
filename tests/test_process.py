"""The real thing: `python -m service` in a subprocess, stopped by real signals."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio

from service.testing import ServiceProcess, service_env
from service.testing.process import ROOT, LogLines

WORKERS = """
    import time

    import trio

    from service import Backoff, WorkerContext, worker


    @worker(grace=2)
    async def ticking(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for tick in ctx.every(0.05):
            ctx.log.info("tick", number=tick.number)


    @worker(requires=("ticking",), grace=2)
    async def holding(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(trio.sleep_forever)
            task_status.started()
            await ctx.stopping.wait()
            nursery.cancel_scope.cancel(reason="soft stop")


    @worker(max_restarts=3, within=30, backoff=Backoff(initial=0.01, cap=0.05))
    async def crash_loop(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        raise RuntimeError("cannot keep going")


    @worker(grace=30)
    async def deaf(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()


    @worker(grace=30)
    async def blocks_on_stop(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await ctx.stopping.wait()
        time.sleep(60)  # a synchronous call: the event loop stops answering


    @worker(grace=30)
    async def floods_stdout(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:  # logs are back-pressure: once stdout is full, the loop waits in a write
            ctx.log.info("flood", padding="x" * 1000)
            await trio.lowlevel.checkpoint()


    @worker()
    async def blocks_at_once(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep(0.2)
        time.sleep(60)
"""


def write_module(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")


@pytest.fixture
def workers_dir(tmp_path: Path) -> Path:
    write_module(tmp_path, "proc_workers", WORKERS)
    return tmp_path


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_stops_every_worker_once_and_exits_zero(
    workers_dir: Path, sig: signal.Signals
) -> None:
    env = service_env(workers_dir, SERVICE_WORKERS="proc_workers:ticking,proc_workers:holding")
    async with ServiceProcess(env) as service:
        ready = await service.wait_for("service.ready")
        assert ready["workers"] == ["ticking", "holding"]
        await service.wait_for("tick")
        service.send(sig)
        assert await service.exit_code() == 0
    [stopping] = service.events("service.stopping")
    assert stopping["signal"] == sig.name
    exits = service.events("worker.exited")
    assert [(e["worker"], e["outcome"]) for e in exits] == [
        ("holding", "stopped"),
        ("ticking", "stopped"),
    ]
    assert len(service.events("worker.started")) == 2
    assert service.events("service.stopped") == [
        {**service.events("service.stopped")[0], "exit_code": 0}
    ]
    for line in service.lines:
        assert {"timestamp", "level", "event"} <= line.keys(), line
        assert line["timestamp"].endswith("Z")


async def test_a_crash_loop_makes_the_supervisor_give_up_with_exit_70(workers_dir: Path) -> None:
    env = service_env(workers_dir, SERVICE_WORKERS="proc_workers:ticking,proc_workers:crash_loop")
    async with ServiceProcess(env) as service:
        assert await service.exit_code() == 70
    [gave_up] = service.events("supervisor.gave_up")
    assert gave_up["worker"] == "crash_loop"
    assert gave_up["restarts"] == 3
    assert gave_up["within_s"] == 30
    [stopping] = service.events("service.stopping")
    assert stopping["reason"] == "supervisor gave up on worker crash_loop"
    assert "worker" not in stopping
    crashes = [e for e in service.events("worker.exited") if e["worker"] == "crash_loop"]
    assert len(crashes) == 4
    assert all(e["error"] == "RuntimeError: cannot keep going" for e in crashes)
    assert crashes[0]["exception"][0]["exc_type"] == "RuntimeError"
    ticking_exit = [e for e in service.events("worker.exited") if e["worker"] == "ticking"]
    assert [e["outcome"] for e in ticking_exit] == ["stopped"]


async def test_a_second_signal_skips_the_remaining_grace(workers_dir: Path) -> None:
    env = service_env(workers_dir, SERVICE_WORKERS="proc_workers:deaf")
    async with ServiceProcess(env, patience=10) as service:  # far less than the 30 s grace
        await service.wait_for("service.ready")
        service.send(signal.SIGTERM)
        await service.wait_for("service.stopping")
        service.send(signal.SIGINT)
        assert await service.exit_code() == 0
    [exited] = service.events("worker.exited")
    assert exited["outcome"] == "cancelled"
    assert exited["cancel_reason"] == "second signal (SIGINT) during shutdown"


async def test_a_worker_blocking_the_loop_on_stop_is_forced_out_with_exit_3(
    workers_dir: Path,
) -> None:
    env = service_env(
        workers_dir,
        SERVICE_WORKERS="proc_workers:ticking,proc_workers:blocks_on_stop",
        SERVICE_SHUTDOWN_TIMEOUT="1",
    )
    async with ServiceProcess(env) as service:
        await service.wait_for("service.ready")
        service.send(signal.SIGTERM)
        assert await service.exit_code() == 3
    [unstopped] = service.events("shutdown.unstopped")
    culprit = next(w for w in unstopped["workers"] if w["worker"] == "blocks_on_stop")
    assert culprit["blocking_loop"] is True
    assert any("in blocks_on_stop" in frame for frame in culprit["stack"])
    assert service.events("service.stopped")[-1]["exit_code"] == 3


async def test_a_loop_blocked_before_the_signal_still_exits_by_the_deadline(
    workers_dir: Path,
) -> None:
    env = service_env(
        workers_dir, SERVICE_WORKERS="proc_workers:blocks_at_once", SERVICE_SHUTDOWN_TIMEOUT="1"
    )
    async with ServiceProcess(env) as service:
        await service.wait_for("service.ready")
        await trio_sleep_past_block()
        service.send(signal.SIGTERM)
        assert await service.exit_code() == 3
    # The loop never ran again, so it never logged service.stopping; the watchdog still fired.
    [unstopped] = service.events("shutdown.unstopped")
    assert unstopped["workers"][0]["worker"] == "blocks_at_once"
    assert any("in blocks_at_once" in frame for frame in unstopped["workers"][0]["stack"])


async def test_the_forced_exit_comes_on_time_while_stdout_is_blocked(workers_dir: Path) -> None:
    """stdout is a pipe nobody drains: the loop blocks inside the log lock, in a write. The
    watchdog's reports must not wait for that lock, nor the exit for the reports."""
    env = service_env(
        workers_dir, SERVICE_WORKERS="proc_workers:floods_stdout", SERVICE_SHUTDOWN_TIMEOUT="1"
    )
    read_end, write_end = os.pipe()
    fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, 4096)  # full sooner
    output = LogLines()
    stream = trio.lowlevel.FdStream(read_end)
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "service"],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=write_end,
        stderr=write_end,
    )
    try:
        with trio.fail_after(20):
            while not any(line.get("event") == "service.ready" for line in output.lines):
                output.feed(bytes(await stream.receive_some()))
            # From here on nobody reads. Once the pipe has no room left, the flood blocks in
            # its next write that does not fit: a kernel state no event reports, so look.
            while _has_room(write_end):  # noqa: ASYNC110
                await trio.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):  # the deadline is 1 s; before the fix it never came
            assert await process.wait() == 3
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
            await stream.aclose()
            os.close(write_end)


def _has_room(fd: int) -> bool:
    """Whether the pipe behind the write end `fd` would take a write now."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(0))


async def trio_sleep_past_block() -> None:
    import trio  # noqa: PLC0415

    await trio.sleep(0.5)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"SERVICE_WORKERS": "nope"}, "SERVICE_WORKERS: unknown worker 'nope'"),
        ({"SERVICE_WORKERS": "proc_workers:missing"}, "has no attribute 'missing'"),
        ({"SERVICE_SHUTDOWN_TIMEOUT": "soon"}, "SERVICE_SHUTDOWN_TIMEOUT: "),
    ],
)
async def test_bad_configuration_exits_2_with_one_line_per_problem(
    workers_dir: Path, settings: dict[str, str], expected: str
) -> None:
    async with ServiceProcess(service_env(workers_dir, **settings)) as service:
        assert await service.exit_code() == 2
    assert any(expected in line for line in service.text), service.text
    assert not any("Traceback" in line for line in service.text)


async def test_a_signal_while_a_worker_is_still_starting_stops_cleanly(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "slow_start",
        """
        import trio

        from service import WorkerContext, worker


        @worker(grace=5)
        async def warming_up(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
            ctx.log.info("warming")
            with trio.move_on_after(60):
                await ctx.stopping.wait()  # abandons its start when asked to stop


        @worker(requires=("warming_up",))
        async def after(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
            raise AssertionError("never started")
        """,
    )
    env = service_env(tmp_path, SERVICE_WORKERS="slow_start:after,slow_start:warming_up")
    async with ServiceProcess(env) as service:
        await service.wait_for("warming")
        service.send(signal.SIGTERM)
        assert await service.exit_code() == 0
    assert service.events("service.ready") == []
    assert [(e["worker"], e["outcome"]) for e in service.events("worker.exited")] == [
        ("warming_up", "stopped")
    ]
