"""The ops server over real HTTP, in a whole in-process service: health, readiness through the
shutdown, metrics, the debug views, the task tree on SIGUSR1, and requests that are not HTTP."""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from service import Backoff, WorkerContext, metrics, worker
from service.testing import http_exchange, http_get, running_service
from tests.conftest import Events


@worker(grace=5)
async def idle(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
    task_status.started()
    await ctx.stopping.wait()


@worker(grace=5)
async def crowd(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(5_000):
            nursery.start_soon(trio.sleep_forever)
        task_status.started()
        await ctx.stopping.wait()
        nursery.cancel_scope.cancel(reason="soft stop")


@worker(max_restarts=1_000, backoff=Backoff(initial=3600, cap=3600))
async def crashes(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
    task_status.started()
    raise RuntimeError("out of coffee")


async def test_livez_at_once_readyz_only_once_every_worker_has_started() -> None:
    gate = trio.Event()

    @worker()
    async def gated(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        await gate.wait()
        task_status.started()
        await ctx.stopping.wait()

    async with running_service(gated) as running:
        live = await http_get(running.address, "/livez")
        assert (live.status, live.text) == (200, "ok\n")
        starting = await http_get(running.address, "/readyz")
        assert (starting.status, starting.text) == (503, "worker gated: starting\n")
        gate.set()
        await running.service.supervisor.ready.wait()
        ready = await http_get(running.address, "/readyz")
        assert (ready.status, ready.text) == (200, "ready\n")


async def test_readyz_turns_503_at_the_first_signal_before_any_worker_stops() -> None:
    seen_by_the_first_to_stop: list[tuple[int, str]] = []
    address: list[tuple[str, int]] = []

    @worker(requires=("idle",))
    async def last(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await ctx.stopping.wait()
        # The soft stop has reached the first worker in line: what does a balancer see now?
        response = await http_get(address[0], "/readyz")
        seen_by_the_first_to_stop.append((response.status, response.text))

    async with running_service(idle, last) as running:
        address.append(running.address)
        await running.service.supervisor.ready.wait()
        running.service.on_signal(signal.SIGTERM)
        live = await http_get(running.address, "/livez")  # still answering while draining
        assert live.status == 200
    assert seen_by_the_first_to_stop == [(503, "the service is stopping\n")]


#: A project's own metric (service.metrics): served with the rest, HELP and TYPE included.
PROJECT_METRIC = "test_ops_server_probes"
PROBES = metrics.counter(PROJECT_METRIC, "Probes of the ops server test (a project's metric).")


async def test_metrics_parse_and_every_one_has_help_and_type() -> None:
    async with running_service(idle, crashes) as running:
        await running.service.supervisor.ready.wait()
        response = await http_get(running.address, "/metrics")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    for name, family in families.items():
        assert family.type != "unknown", name
        assert family.documentation, name
        assert f"# TYPE {name} " in response.text or f"# TYPE {name}_total " in response.text
    assert "_created" not in response.text
    for expected in (
        "service_tasks_live",
        "service_tasks_spawned",
        "service_event_loop_lag_seconds",
        "service_worker_state",
        "service_worker_exits",
        "service_worker_restarts",
        "service_shutdown_duration_seconds",
        "service_jobs",
        "service_jobs_queued",
        "service_jobs_oldest_pending_seconds",
        PROJECT_METRIC,
        "service_threads_busy",
        "process_open_fds",
    ):
        assert expected in families, expected
    states = {
        (s.labels["worker"], s.labels["state"]): s.value
        for s in families["service_worker_state"].samples
    }
    assert states[("idle", "running")] == 1.0
    assert states[("idle", "backoff")] == 0.0
    assert states[("crashes", "backoff")] == 1.0
    exits = {
        (s.labels["worker"], s.labels["outcome"]): s.value
        for s in families["service_worker_exits"].samples
    }
    assert exits[("crashes", "crashed")] >= 1.0


async def test_debug_tasks_dumps_thousands_of_tasks_grouped() -> None:
    async with running_service(crowd) as running:
        await running.service.supervisor.ready.wait()
        text = await http_get(running.address, "/debug/tasks")
        tree = await http_get(running.address, "/debug/tasks?format=json")
        bad = await http_get(running.address, "/debug/tasks?format=xml")
    assert text.status == 200
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    [crowd_line] = [line for line in text.text.splitlines() if "×5,000" in line]
    assert "trio.sleep_forever [worker crowd]" in crowd_line
    assert len(text.text.splitlines()) < 40
    assert tree.json()["tasks"] > 5_000
    assert bad.status == 400


async def test_debug_workers_says_how_each_one_last_ended() -> None:
    async with running_service(idle, crashes) as running:
        await running.service.supervisor.ready.wait()
        response = await http_get(running.address, "/debug/workers")
    by_name = {entry["worker"]: entry for entry in response.json()}
    assert by_name["idle"]["state"] == "running"
    assert by_name["idle"]["last_exit"] is None
    crashed = by_name["crashes"]
    assert crashed["state"] == "backoff"
    assert crashed["not_ready"] == "backoff"
    assert crashed["last_exit"]["outcome"] == "crashed"
    assert crashed["last_exit"]["error"] == "RuntimeError: out of coffee"


async def test_a_wrong_token_is_401_and_logged(events: Events) -> None:
    async with running_service(ops_debug_token="s3cret") as running:
        wrong = await http_get(
            running.address, "/debug/workers", headers={"Authorization": "Bearer nope"}
        )
        right = await http_get(
            running.address, "/debug/workers", headers={"Authorization": "Bearer s3cret"}
        )
    assert wrong.status == 401
    assert right.status == 200
    [logged] = events.named("ops.unauthorized")
    assert logged["path"] == "/debug/workers"


async def test_the_debug_page_is_self_contained() -> None:
    async with running_service(idle) as running:
        page = await http_get(running.address, "/debug/")
        redirect = await http_get(running.address, "/debug")
        samples = await http_get(running.address, "/debug/samples")
    assert page.status == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for reference in ('src="', 'href="http', "@import", "url("):
        assert reference not in page.text, reference
    assert (redirect.status, redirect.headers["location"]) == (308, "/debug/")
    assert samples.json()["interval_s"] == 1.0
    assert samples.json()["samples"][0]["live"] > 0


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /livez HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
        b"GET /livez HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
        b"GET /livez\r\n\r\n",  # no HTTP version (HTTP/0.9)
        b"G\x00T /livez HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),  # a TLS ClientHello
    ],
)
async def test_malformed_requests_get_4xx_and_the_server_keeps_serving(
    request_bytes: bytes,
) -> None:
    async with running_service() as running:
        raw = await http_exchange(running.address, request_bytes)
        status = int(raw.split(b" ", 2)[1])
        assert 400 <= status < 500, raw[:200]
        after = await http_get(running.address, "/livez")
        assert after.status == 200


async def test_sigusr1_writes_the_task_tree_to_the_log(events: Events) -> None:
    async with running_service(crowd) as running:
        await running.service.supervisor.ready.wait()
        # To this thread: the handler has run when pthread_kill returns, and has queued the
        # signal for the loop; once the queue is through, the dumping task is awake.
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
        done = trio.Event()
        trio.lowlevel.current_trio_token().run_sync_soon(done.set)
        await done.wait()
        await trio.testing.wait_all_tasks_blocked()
    [dump] = events.named("tasks.dump")
    assert dump["tasks"] > 5_000
    tree: list[Any] = dump["tree"]
    assert any("×5,000" in line for line in tree)
