"""Replicas sharing one PostgreSQL job table: real `python -m service` processes, real signals,
a real server stopped and started under them.

What the scale-out issue promises, checked from the outside. Every replica's JSON log is read
as it comes (so its pipe never fills); the `job.done` lines of all replicas, counted per job
id, and the rows of the job table, read once the replicas have exited, are the evidence:
- three replicas and 5,000 jobs: every job done exactly once;
- one replica SIGKILLed mid-run: every job done at least once, and the jobs done twice all
  among those the killed replica held (its leased rows, read right after it died);
- one replica SIGTERMed mid-run: exactly once (the soft stop finishes what it holds);
- the server down at start-up, and stopped mid-run: the replicas turn not ready (`/readyz`),
  say why, stay up, and once it is back finish every job by themselves.
The URL carries a password: no line of any replica may show it.
"""

from __future__ import annotations

import json
import signal
import textwrap
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import trio

from service.testing import HttpResponse, ServiceProcess, http_get, service_command, service_env
from service.testing.postgres import PASSWORD, PostgresCluster

JOBS = 5_000
#: The bound on each wait (a replica's start, the whole batch, an exit).
PATIENCE = 45.0

#: The replicas' poller, with a job type whose handler waits `seconds` (I/O, not CPU). A
#: gated job says it began (`work.begin`), then waits for its gate (a file) to exist: it is
#: in flight, however slowly the test gets to signal the replica, until the test opens it.
REPLICA_JOBS = """
    from pathlib import Path

    import trio
    from pydantic import BaseModel

    from service import JobContext, job
    from service.workers.jobs import jobs


    class Work(BaseModel):
        seconds: float
        gate: str | None = None


    @job()
    async def work(payload: Work, ctx: JobContext) -> None:
        if payload.gate:
            ctx.log.info("work.begin")
            while not Path(payload.gate).exists():
                await trio.sleep(0.01)
        await trio.sleep(payload.seconds)
"""


def payload(seconds: float, *, gate: Path | None = None) -> str:
    return json.dumps({"type": "work", "seconds": seconds, "gate": gate and str(gate)})


def replica_env(tmp_path: Path, url: str, **settings: str) -> dict[str, str]:
    (tmp_path / "replica_jobs.py").write_text(textwrap.dedent(REPLICA_JOBS), encoding="utf-8")
    return service_env(
        tmp_path,
        SERVICE_WORKERS="replica_jobs:jobs",
        SERVICE_DB__URL=url,
        SERVICE_LOG_FORMAT="json",
        SERVICE_JOBS__POLL_INTERVAL="0.5",
        **settings,
    )


class Replicas:
    """Running replicas, each one's output read continuously in the background."""

    def __init__(self, processes: list[ServiceProcess]) -> None:
        self.processes = processes
        self.exit_codes: dict[int, int] = {}

    async def read(self, index: int) -> None:
        self.exit_codes[index] = await self.processes[index].exit_code()

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        with trio.move_on_after(PATIENCE):
            while True:
                if condition():
                    return
                await trio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.tail()}")

    async def until_ready(self) -> None:
        for process in self.processes:
            await self.until(lambda p=process: bool(p.events("service.ready")), "service.ready")

    async def stop(self, index: int) -> int:
        self.processes[index].send(signal.SIGTERM)
        await self.until(lambda: index in self.exit_codes, f"replica {index} to exit")
        return self.exit_codes[index]

    def done_counts(self) -> Counter[str]:
        return Counter(
            line["job_id"] for process in self.processes for line in process.events("job.done")
        )

    async def signal_one_mid_run(self, sig: signal.Signals, gate: Path) -> ServiceProcess:
        """Send `sig` to the first replica seen beginning a gated job, which it then surely
        holds, then open the gate; that replica, once it has exited."""
        await self.until(
            lambda: any(process.events("work.begin") for process in self.processes),
            "a gated job to begin",
        )
        index = next(i for i, p in enumerate(self.processes) if p.events("work.begin"))
        self.processes[index].send(sig)
        await trio.Path(gate).touch()
        await self.until(lambda: index in self.exit_codes, f"replica {index} to exit")
        return self.processes[index]

    def tail(self) -> str:
        return "\n".join(
            f"[{index}] {text}"
            for index, process in enumerate(self.processes)
            for text in process.text[-15:]
        )

    def lines(self) -> list[str]:
        return [text for process in self.processes for text in process.text]


@asynccontextmanager
async def replicas(count: int, env: dict[str, str]) -> AsyncIterator[Replicas]:
    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        processes = [
            await stack.enter_async_context(ServiceProcess(env, patience=PATIENCE * 2))
            for _ in range(count)
        ]
        running = Replicas(processes)
        for index in range(count):
            nursery.start_soon(running.read, index)
        await running.until_ready()
        yield running
        for index in range(count):
            if index not in running.exit_codes:
                assert await running.stop(index) == 0, running.tail()


async def enqueue(env: dict[str, str], count: int, job: str) -> None:
    command = ["jobs", "enqueue", "--count", str(count), "--payload", job]
    result = await service_command(env, *command, patience=PATIENCE)
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == {"enqueued": count}


async def enqueue_with_gated_ones_midway(env: dict[str, str], gate: Path) -> None:
    """JOBS jobs of 20 ms: half, then a few gated ones, then the rest."""
    gated = 30
    first = (JOBS - gated) // 2
    await enqueue(env, first, payload(0.02))
    await enqueue(env, gated, payload(0.02, gate=gate))
    await enqueue(env, JOBS - gated - first, payload(0.02))


async def query(url: str, sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
    def run() -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True) as connection:
            return connection.execute(sql, parameters).fetchall()

    return await trio.to_thread.run_sync(run)


async def done_in_table(url: str) -> int:
    [(done,)] = await query(url, "SELECT count(*) FROM jobs WHERE state = 'done'")
    return int(done)


async def until_all_done(url: str, running: Replicas, total: int) -> None:
    with trio.move_on_after(PATIENCE):
        while True:
            try:
                if await done_in_table(url) == total:
                    return
            except psycopg.OperationalError:
                pass  # the server is still starting up
            await trio.sleep(0.1)
    raise AssertionError(f"not every job was done:\n{running.tail()}")


async def table_rows(url: str) -> dict[str, tuple[str, int]]:
    rows = await query(url, "SELECT id, state, attempts FROM jobs")
    return {job_id: (state, attempts) for job_id, state, attempts in rows}


async def until_readiness(address: tuple[str, int], status: int) -> HttpResponse:
    with trio.fail_after(PATIENCE):
        while True:
            response = await http_get(address, "/readyz")
            if response.status == status:
                return response
            await trio.sleep(0.05)


def no_secret_in(running: Replicas) -> None:
    leaked = [
        text for text in running.lines() if PASSWORD in text or quote(PASSWORD, safe="") in text
    ]
    assert leaked == []


# -- 1. three replicas, 5,000 jobs: exactly once -------------------------------------------


async def assert_every_job_done_exactly_once(url: str, running: Replicas) -> None:
    """Every row done at its first attempt, and one `job.done` line for each across replicas."""
    rows = await table_rows(url)
    assert len(rows) == JOBS
    assert set(rows.values()) == {("done", 1)}
    counts = running.done_counts()
    assert set(counts) == set(rows)
    assert [job_id for job_id, n in counts.items() if n != 1] == []


async def test_three_replicas_do_every_job_exactly_once(tmp_path: Path, pg_url: str) -> None:
    env = replica_env(tmp_path, pg_url, SERVICE_JOBS__CONCURRENCY="50")
    async with replicas(3, env) as running:
        await enqueue(env, JOBS, payload(0))  # the replicas are idle: NOTIFY wakes them
        await until_all_done(pg_url, running, JOBS)
    assert running.exit_codes == {0: 0, 1: 0, 2: 0}
    await assert_every_job_done_exactly_once(pg_url, running)
    assert all(process.events("job.done") for process in running.processes)  # all shared it
    no_secret_in(running)


# -- 2. one replica SIGKILLed mid-run: at least once, twice only if it held the job ------------


async def test_a_killed_replica_costs_only_the_jobs_it_held(tmp_path: Path, pg_url: str) -> None:
    # A short lease for everyone, so the survivors take over the victim's jobs soon; yet long
    # enough (as the timeout) that no live replica, even on a busy machine, loses a job, or
    # times out a gated one waiting for the test to open the gate.
    env = replica_env(
        tmp_path,
        pg_url,
        SERVICE_JOBS__CONCURRENCY="20",
        SERVICE_JOBS__LEASE_SECONDS="8",
        SERVICE_JOBS__JOB_TIMEOUT="6",
    )
    async with replicas(3, env) as running:
        await enqueue_with_gated_ones_midway(env, tmp_path / "gate")
        victim = await running.signal_one_mid_run(signal.SIGKILL, tmp_path / "gate")
        # Dead, so its rows are as it left them; nobody else may take them for 8 s.
        held = await query(
            pg_url,
            "SELECT id FROM jobs WHERE state = 'leased' AND lease_owner LIKE %s",
            f"%/{victim.process.pid}/%",
        )
        await until_all_done(pg_url, running, JOBS)
    assert sorted(running.exit_codes.values()) == [-signal.SIGKILL, 0, 0]
    held_ids = {job_id for (job_id,) in held}
    assert held_ids, "the killed replica held no job"
    rows = await table_rows(pg_url)
    assert len(rows) == JOBS
    assert {state for state, _ in rows.values()} == {"done"}
    counts = running.done_counts()
    assert set(counts) == set(rows)  # every job done at least once
    assert {job_id for job_id, n in counts.items() if n > 1} <= held_ids
    assert {job_id for job_id, (_, attempts) in rows.items() if attempts > 1} <= held_ids
    no_secret_in(running)


# -- 3. one replica SIGTERMed mid-run: exactly once -------------------------------------------


async def test_a_replica_stopped_mid_run_finishes_what_it_holds(
    tmp_path: Path, pg_url: str
) -> None:
    env = replica_env(tmp_path, pg_url, SERVICE_JOBS__CONCURRENCY="20")
    async with replicas(3, env) as running:
        await enqueue_with_gated_ones_midway(env, tmp_path / "gate")
        stopped = await running.signal_one_mid_run(signal.SIGTERM, tmp_path / "gate")
        [(leased,)] = await query(
            pg_url,
            "SELECT count(*) FROM jobs WHERE lease_owner LIKE %s",
            f"%/{stopped.process.pid}/%",
        )
        assert leased == 0  # nothing left behind: its jobs in flight were finished and recorded
        await until_all_done(pg_url, running, JOBS)
    assert running.exit_codes == {0: 0, 1: 0, 2: 0}
    await assert_every_job_done_exactly_once(pg_url, running)
    stopping = next(
        i for i, line in enumerate(stopped.lines) if line.get("event") == "service.stopping"
    )
    assert any(line.get("event") == "job.done" for line in stopped.lines[stopping:])
    no_secret_in(running)


# -- 4. the server down at start-up, then stopped mid-run ---------------------------------


async def test_replicas_ride_out_a_server_that_is_down_or_restarts(
    tmp_path: Path, private_postgres: PostgresCluster
) -> None:
    cluster = private_postgres
    url = await trio.to_thread.run_sync(cluster.create_database)
    total = 2_000
    env = replica_env(tmp_path, url, SERVICE_JOBS__CONCURRENCY="20")
    await trio.to_thread.run_sync(cluster.stop)
    async with replicas(3, env) as running:  # they start without the server
        addresses = [
            (line["host"], line["port"])
            for process in running.processes
            for line in process.events("ops.listening")
        ]
        assert len(addresses) == 3
        # Down at start-up: up anyway, not ready, and saying why.
        for address in addresses:
            readiness = await until_readiness(address, 503)
            assert "worker jobs: database unavailable: " in readiness.text
        await running.until(
            lambda: all(p.events("db.unavailable") for p in running.processes), "db.unavailable"
        )
        assert all(
            "refused" in process.events("db.unavailable")[0]["reason"]
            for process in running.processes
        )
        await trio.to_thread.run_sync(cluster.start)
        for address in addresses:
            await until_readiness(address, 200)  # migrated by the first to connect

        await enqueue(env, total, payload(0.02))
        await running.until(lambda: sum(running.done_counts().values()) >= 200, "jobs done")
        await trio.to_thread.run_sync(cluster.stop)
        # Lost mid-run: not ready again, still up.
        for address in addresses:
            readiness = await until_readiness(address, 503)
            assert "worker jobs: database unavailable: " in readiness.text
        assert running.exit_codes == {}
        await trio.to_thread.run_sync(cluster.start)
        await until_all_done(url, running, total)
        for address in addresses:
            await until_readiness(address, 200)
    assert running.exit_codes == {0: 0, 1: 0, 2: 0}
    rows = await table_rows(url)
    assert len(rows) == total
    assert {state for state, _ in rows.values()} == {"done"}
    assert set(running.done_counts()) == set(rows)  # every job done (at least once)
    for process in running.processes:
        assert len(process.events("db.available")) >= 2, "a replica never said it was back"
        assert [e for e in process.events("worker.exited") if e["outcome"] == "crashed"] == []
        assert process.events("worker.restarting") == []
    no_secret_in(running)
