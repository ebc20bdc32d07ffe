"""The supervisor's policy paths, in virtual time."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from service import Backoff, WorkerContext, unit_of_work, worker
from service.resources import Resources
from service.supervision.runner import WorkerRunner
from service.testing import supervised
from tests.conftest import Events

NO_WAIT = Backoff(initial=0, cap=0)


def behaviour_on_first_attempt(outcome: str):  # type: ignore[no-untyped-def]
    """A worker body: on attempt 1 it completes or crashes; later attempts park forever."""

    async def body(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        if ctx.attempt == 1:
            await trio.sleep(1)
            if outcome == "crashed":
                raise RuntimeError("first attempt fails")
            return
        await trio.sleep_forever()

    return body


@pytest.mark.parametrize(
    ("restart", "outcome", "restarted"),
    [
        ("permanent", "completed", True),
        ("permanent", "crashed", True),
        ("transient", "completed", False),
        ("transient", "crashed", True),
        ("temporary", "completed", False),
        ("temporary", "crashed", False),
    ],
)
async def test_restart_policy(
    restart: str, outcome: str, restarted: bool, events: Events, autojump_clock: object
) -> None:
    spec = worker(name="subject", restart=restart)(behaviour_on_first_attempt(outcome))  # type: ignore[arg-type]
    async with supervised(spec) as supervisor:
        await trio.sleep(30)
        runner = supervisor.runners[0]
        assert runner.state == ("running" if restarted else "ended")
    exits = events.named("worker.exited")
    assert exits[0]["outcome"] == outcome
    assert len(events.named("worker.started")) == (2 if restarted else 1)
    assert len(events.named("worker.restarting")) == (1 if restarted else 0)
    if restarted:  # the second attempt ran until the stop
        assert [e["outcome"] for e in exits] == [outcome, "cancelled"]
    else:
        assert len(exits) == 1


async def test_crash_is_logged_once_with_error_and_traceback(
    events: Events, autojump_clock: object
) -> None:
    @worker(restart="temporary")
    async def fragile(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep(2)
        raise KeyError("missing")

    async with supervised(fragile):
        await trio.sleep(5)
    [exited] = events.named("worker.exited")
    assert exited["worker"] == "fragile"
    assert exited["outcome"] == "crashed"
    assert exited["error"] == "KeyError: 'missing'"
    assert exited["uptime_s"] == pytest.approx(2.0)
    assert exited["restarts"] == 0
    assert isinstance(exited["exc_info"], KeyError)
    assert exited["log_level"] == "error"


async def test_crash_inside_a_workers_nursery_keeps_the_whole_traceback(
    events: Events, autojump_clock: object
) -> None:
    async def child_that_fails() -> None:
        await trio.sleep(1)
        raise ValueError("deep inside")

    @worker(restart="temporary")
    async def parent(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child_that_fails)
            nursery.start_soon(trio.sleep_forever)

    async with supervised(parent):
        await trio.sleep(5)
    [exited] = events.named("worker.exited")
    assert exited["outcome"] == "crashed"
    error = exited["exc_info"]
    assert isinstance(error, ExceptionGroup)
    [leaf] = error.exceptions
    assert isinstance(leaf, ValueError)
    frames = []
    tb = leaf.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "child_that_fails" in frames


async def test_restart_delays_follow_the_backoff_ceilings(
    events: Events, autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(random.Random, "uniform", lambda self, low, high: high)

    @worker(backoff=Backoff(initial=1.0, cap=4.0), max_restarts=100, within=1000)
    async def flaky(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        raise RuntimeError("again")

    async with supervised(flaky):
        await trio.sleep(20)
    delays = [e["delay_s"] for e in events.named("worker.restarting")]
    assert delays[:6] == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    attempts = [e["attempt"] for e in events.named("worker.restarting")]
    assert attempts[:3] == [2, 3, 4]


async def test_backoff_resets_after_a_stable_run(
    events: Events, autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(random.Random, "uniform", lambda self, low, high: high)

    @worker(backoff=Backoff(initial=1.0, cap=100.0), max_restarts=100, within=30)
    async def settles(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        # Three quick crashes, then one run longer than `within`, then a quick crash again.
        await trio.sleep(40 if ctx.attempt == 4 else 0.5)
        raise RuntimeError("crash")

    async with supervised(settles):
        await trio.sleep(50)
    delays = [e["delay_s"] for e in events.named("worker.restarting")]
    assert delays[:5] == [1.0, 2.0, 4.0, 1.0, 2.0]


async def test_gives_up_after_too_many_restarts_within_the_window(
    events: Events, autojump_clock: object
) -> None:
    gave_up: list[str] = []

    @worker(max_restarts=3, within=10, backoff=NO_WAIT)
    async def doomed(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        raise RuntimeError("always")

    @worker(grace=1)
    async def bystander(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await ctx.stopping.wait()

    async with supervised(bystander, doomed, on_give_up=gave_up.append) as supervisor:
        await supervisor.runners[1].done.wait()
    assert gave_up == ["doomed"]
    [event] = events.named("supervisor.gave_up")
    assert event == {
        "event": "supervisor.gave_up",
        "worker": "doomed",
        "restarts": 3,
        "within_s": 10,
        "log_level": "error",
    }
    assert len(events.named("worker.exited", worker="doomed")) == 4
    # The others are stopped softly, as on a signal.
    assert events.named("worker.exited", worker="bystander")[0]["outcome"] == "stopped"


async def test_restarts_spread_wider_than_the_window_never_give_up(
    events: Events, autojump_clock: object
) -> None:
    @worker(max_restarts=2, within=10, backoff=NO_WAIT)
    async def periodic_crash(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep(6)
        raise RuntimeError("every six seconds")

    async with supervised(periodic_crash):
        await trio.sleep(100)
    assert events.named("supervisor.gave_up") == []
    assert len(events.named("worker.restarting")) >= 15


async def test_zero_max_restarts_gives_up_on_the_first_failure(
    events: Events, autojump_clock: object
) -> None:
    @worker(max_restarts=0)
    async def once(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        raise RuntimeError("no second chance")

    async with supervised(once, on_give_up=lambda name: None) as supervisor:
        await supervisor.runners[0].done.wait()
    assert events.named("worker.restarting") == []
    assert len(events.named("supervisor.gave_up", worker="once")) == 1


async def test_a_worker_that_never_reports_started_is_a_start_failure(
    events: Events, autojump_clock: object
) -> None:
    @worker(start_timeout=5, restart="transient", max_restarts=1, within=100, backoff=NO_WAIT)
    async def mute(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        await trio.sleep_forever()

    gave_up: list[str] = []
    start = trio.current_time()
    async with supervised(mute, on_give_up=gave_up.append) as supervisor:
        await supervisor.runners[0].done.wait()
    assert trio.current_time() - start == pytest.approx(10.0)  # two attempts of 5 s, no hang
    exits = events.named("worker.exited")
    assert [e["outcome"] for e in exits] == ["crashed", "crashed"]
    assert exits[0]["error"] == "StartTimeout: did not report started within 5s"
    assert events.named("worker.started") == []
    assert gave_up == ["mute"]
    assert events.named("service.ready") == []


async def test_start_in_requires_order_and_stop_in_reverse(
    events: Events, autojump_clock: object
) -> None:
    started_at: dict[str, float] = {}

    def make(name: str, requires: tuple[str, ...]):  # type: ignore[no-untyped-def]
        @worker(name=name, requires=requires)
        async def body(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
            await trio.sleep(1)  # slow to start: the next must wait for it
            started_at[ctx.name] = trio.current_time()
            task_status.started()
            await ctx.stopping.wait()
            await trio.sleep(0.5)  # finishing up takes a moment

        return body

    top, middle, base = make("top", ("middle",)), make("middle", ("base",)), make("base", ())
    async with supervised(top, base, middle) as supervisor:
        await supervisor.ready.wait()
    assert events.sequence("worker.started", "service.ready") == [
        ("worker.started", "base"),
        ("worker.started", "middle"),
        ("worker.started", "top"),
        ("service.ready", None),
    ]
    assert started_at["middle"] - started_at["base"] == pytest.approx(1.0)
    assert events.sequence("worker.exited") == [
        ("worker.exited", "top"),
        ("worker.exited", "middle"),
        ("worker.exited", "base"),
    ]
    assert {e["outcome"] for e in events.named("worker.exited")} == {"stopped"}


async def test_soft_stop_within_grace_is_stopped(events: Events, autojump_clock: object) -> None:
    ticks: list[int] = []

    @worker(grace=5)
    async def ticker(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        async for tick in ctx.every(1.0):
            ticks.append(tick.number)
            await trio.sleep(0.25)

    async with supervised(ticker):
        await trio.sleep(3.5)
        stop_at = trio.current_time()
    assert trio.current_time() - stop_at < 0.3  # ended at the next checkpoint, not after grace
    assert ticks == [0, 1, 2, 3]
    [exited] = events.named("worker.exited")
    assert exited["outcome"] == "stopped"
    assert "cancel_reason" not in exited


async def test_grace_exceeded_is_cancelled_with_the_reason(
    events: Events, autojump_clock: object
) -> None:
    @worker(grace=2)
    async def stubborn(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep_forever()  # ignores the soft stop

    async with supervised(stubborn):
        await trio.sleep(1)
        stop_at = trio.current_time()
    assert trio.current_time() - stop_at == pytest.approx(2.0)
    [exited] = events.named("worker.exited")
    assert exited["outcome"] == "cancelled"
    assert exited["cancel_reason"] == "grace period of 2s exceeded"
    assert exited["log_level"] == "warning"


async def test_hard_cancel_skips_the_remaining_grace(
    events: Events, autojump_clock: object
) -> None:
    @worker(grace=60)
    async def slow_to_stop(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep_forever()

    async with supervised(slow_to_stop) as supervisor:
        await supervisor.ready.wait()
        supervisor.stop()
        await trio.sleep(3)
        supervisor.cancel("second signal (SIGINT) during shutdown")
        cancel_at = trio.current_time()
        await supervisor.runners[0].done.wait()
        assert trio.current_time() == cancel_at
    [exited] = events.named("worker.exited")
    assert exited["cancel_reason"] == "second signal (SIGINT) during shutdown"


async def test_crash_during_the_soft_stop_is_not_restarted(
    events: Events, autojump_clock: object
) -> None:
    @worker(restart="permanent")
    async def breaks_on_stop(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await ctx.stopping.wait()
        raise RuntimeError("cleanup failed")

    async with supervised(breaks_on_stop):
        await trio.sleep(1)
    assert [e["outcome"] for e in events.named("worker.exited")] == ["crashed"]
    assert events.named("worker.restarting") == []


async def test_stop_during_start_up_starts_nothing_more(
    events: Events, autojump_clock: object
) -> None:
    @worker(grace=1)
    async def slow_start(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        await ctx.stopping.wait()  # gives up starting when asked to stop

    @worker(requires=("slow_start",))
    async def never(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        raise AssertionError("must not start")

    async with supervised(slow_start, never):
        await trio.sleep(3)
    assert events.sequence("worker.exited", "worker.started", "service.ready") == [
        ("worker.exited", "slow_start")
    ]
    assert events.named("worker.exited")[0]["outcome"] == "stopped"


async def test_stop_during_backoff_ends_without_another_attempt(
    events: Events, autojump_clock: object
) -> None:
    @worker(backoff=Backoff(initial=50, cap=50, multiplier=1))
    async def waits_long(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        raise RuntimeError("crash")

    async with supervised(waits_long) as supervisor:
        await trio.sleep(0.1)
        assert supervisor.runners[0].state == "backoff"
        assert supervisor.not_ready_reasons() == ["worker waits_long: backoff"]
        stop_at = trio.current_time()
    assert trio.current_time() == stop_at
    assert len(events.named("worker.exited")) == 1
    assert len(events.named("worker.started")) == 1


async def test_not_ready_while_starting_and_once_stopping(autojump_clock: object) -> None:
    @worker()
    async def late(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        await trio.sleep(2)
        task_status.started()
        await ctx.stopping.wait()

    async with supervised(late) as supervisor:
        await trio.sleep(1)
        assert supervisor.not_ready_reasons() == ["worker late: starting"]
        await supervisor.ready.wait()
        assert supervisor.not_ready_reasons() == []
        late_context = supervisor.runners[0]._context  # noqa: SLF001
        assert late_context is not None
        late_context.not_ready("upstream disconnected")
        assert supervisor.not_ready_reasons() == ["worker late: upstream disconnected"]
        late_context.ready()
        assert supervisor.not_ready_reasons() == []
        supervisor.stop()
        assert supervisor.not_ready_reasons() == ["the service is stopping"]


async def test_a_unit_of_works_trace_id_does_not_bleed_into_workers(
    events: Events, autojump_clock: object
) -> None:
    @worker()
    async def long_lived(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        ctx.log.info("outside")
        with unit_of_work() as trace_id:
            ctx.log.info("inside", expected=trace_id)
        ctx.log.info("after")
        await ctx.stopping.wait()

    with unit_of_work("caller-trace"):
        async with supervised(long_lived):
            await trio.sleep(1)
    [outside] = events.named("outside")
    [inside] = events.named("inside")
    [after] = events.named("after")
    assert "trace_id" not in outside
    assert "trace_id" not in after
    assert inside["trace_id"] == inside["expected"]
    assert outside["worker"] == inside["worker"] == "long_lived"


async def test_started_twice_is_a_crash(events: Events, autojump_clock: object) -> None:
    @worker(restart="temporary")
    async def eager(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        task_status.started()

    async with supervised(eager):
        await trio.sleep(1)
    [exited] = events.named("worker.exited")
    assert exited["error"] == "RuntimeError: task_status.started() called twice"


async def test_the_cancel_reason_survives_a_workers_own_nursery(
    events: Events, autojump_clock: object
) -> None:
    @worker(grace=1)
    async def fan_out(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(trio.sleep_forever)
            task_status.started()
            await trio.sleep_forever()  # ignores the soft stop

    async with supervised(fan_out):
        await trio.sleep(1)
    [exited] = events.named("worker.exited")
    assert exited["outcome"] == "cancelled"
    assert exited["cancel_reason"] == "grace period of 1s exceeded"


async def test_cancellation_from_outside_is_logged_and_propagates(
    events: Events, autojump_clock: object
) -> None:
    @worker()
    async def inner(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep_forever()

    with trio.move_on_after(5) as outer:
        async with supervised(inner):
            await trio.sleep_forever()
    assert outer.cancelled_caught
    [exited] = events.named("worker.exited")
    assert exited["outcome"] == "cancelled"
    assert exited["cancel_reason"] == "deadline"


@pytest.mark.parametrize("exit_kind", [SystemExit, KeyboardInterrupt])
@pytest.mark.parametrize("in_a_nursery", [False, True], ids=["bare", "in_a_nursery"])
async def test_an_exit_request_is_not_a_crash_even_from_a_workers_nursery(
    exit_kind: type[BaseException], in_a_nursery: bool, events: Events, autojump_clock: object
) -> None:
    async def leave() -> None:
        raise exit_kind

    @worker(backoff=NO_WAIT)
    async def leaving(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep(1)
        if not in_a_nursery:
            await leave()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(leave)

    with pytest.RaisesGroup(exit_kind, flatten_subgroups=True):
        async with supervised(leaving):
            await trio.sleep(30)
    assert events.named("worker.restarting") == []
    assert len(events.named("worker.started")) == 1


@pytest.mark.parametrize("how", ["soft", "hard"])
async def test_a_stop_requested_before_the_first_attempt_starts_nothing(
    how: str, events: Events, autojump_clock: object
) -> None:
    @worker(grace=30)
    async def late(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await ctx.stopping.wait()

    runner = WorkerRunner(late, late.settings(), on_give_up=lambda name: None)
    if how == "soft":
        runner.request_stop()
    else:
        runner.cancel("second signal (SIGINT) during shutdown")
    with trio.fail_after(1):  # not the 30 s grace: the stop was not lost
        await runner.run(Resources())
    assert runner.state == "ended"
    assert events.named("worker.started") == []


async def test_statistics_is_a_snapshot_of_every_worker_that_ops_can_keep(
    autojump_clock: object,
) -> None:
    warmed_up = trio.Event()

    @worker(restart="temporary")
    async def warming(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        ctx.not_ready("warming up")
        task_status.started()
        await warmed_up.wait()
        ctx.ready()
        await ctx.stopping.wait()

    async with supervised(warming) as supervisor:
        await supervisor.ready.wait()
        await trio.sleep(5)
        before = supervisor.statistics()
        warmed_up.set()
        await trio.sleep(1)
        after = supervisor.statistics()
        [runner] = supervisor.runners

    [early], [later] = before.workers, after.workers
    assert (early.name, early.restart, early.state) == ("warming", "temporary", "running")
    assert early.not_ready_reason == "warming up"  # as it was: the snapshot did not move
    assert before.not_ready_reasons() == ["worker warming: warming up"]
    assert early.attempt_started_at == later.attempt_started_at is not None
    assert early.task is runner.task
    assert later.not_ready_reason is None
    assert after.not_ready_reasons() == []
    ended = supervisor.statistics()
    assert ended.stopping
    assert ended.workers[0].state == "ended"
    assert ended.workers[0].task is None  # nothing left to show in a task tree
    assert ended.workers[0].last_exit is not None
    assert ended.workers[0].last_exit.outcome == "stopped"
    with pytest.raises(AttributeError):
        early.state = "ended"  # type: ignore[misc]
