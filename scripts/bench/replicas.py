"""Jobs per second with 1, 2 and 3 replicas sharing one PostgreSQL job table.

Candidate: N replicas, each a real `python -m service` process running the `jobs` poller at
`concurrency` 10 (one replica holds at most ten jobs at a time: set here, as the default, 64,
would make one replica use the 2 cores before its slots are full), JSON logs on
a pipe the benchmark drains, against a throwaway PostgreSQL server on loopback
(`service.testing.postgres`, one per run, durability off). The job type waits 10 ms on I/O
(`await trio.sleep(0.01)`: a call to another service, say), registered in a worker module
written to a temporary directory. Once every replica is up and idle, M jobs are enqueued in
one transaction (its NOTIFY wakes every replica at once) and the clock runs from that commit
until the table says all M are done (polled every 10 ms on a connection of the benchmark's
own). Each replica count gets a fresh database.

Baseline: one replica, measured in the same run. The point of replicas is that the work a
single one can hold in flight bounds its throughput (here 10 jobs x 10 ms: at most 1,000
jobs/s), and more replicas hold more: three should come close to three times one, short of it
only by what claiming costs when replicas contend for the same rows (`SKIP LOCKED` makes them
skip, never wait) and by the CPU that two cores share between three replicas and the server.

Target: 3 replicas >= 2.5x one replica.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common
import psycopg
import trio

from service.jobs import JobTable
from service.resources.postgres import open_postgres
from service.testing.postgres import throwaway_cluster

BENCH = "replicas"
TARGET = "3 replicas >= 2.5x one replica (jobs/s, higher is better)"

WORKER_MODULE = """
    import trio
    from pydantic import BaseModel

    from service import JobContext, job
    from service.workers.jobs import jobs


    class Nothing(BaseModel):
        pass


    @job()
    async def io(payload: Nothing, ctx: JobContext) -> None:
        await trio.sleep(0.01)  # waiting on I/O, as a call to another service would
"""


def start_replicas(count: int, env: dict[str, str]) -> list[subprocess.Popen[str]]:
    """Start `count` replicas and wait until each is ready; their output is drained."""
    replicas = []
    for _ in range(count):
        process, _seconds = _common.spawn_until(
            [sys.executable, "-m", "service"], env, _common.is_service_ready
        )
        assert process.stdout is not None
        threading.Thread(target=process.stdout.read, daemon=True).start()  # never let it block
        replicas.append(process)
    return replicas


def stop_replicas(replicas: list[subprocess.Popen[str]]) -> None:
    for process in replicas:
        process.send_signal(signal.SIGTERM)
    for process in replicas:
        if process.wait(timeout=60) != 0:
            raise RuntimeError(f"a replica exited with {process.returncode}")


async def enqueue(url: str, m: int) -> None:
    async with open_postgres(url, listen=False) as db:
        await JobTable(db).enqueue([{"type": "io"}] * m)


def until_done(url: str, m: int) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        while True:
            [(done, failed)] = connection.execute(
                "SELECT count(*) FILTER (WHERE state = 'done'),"
                " count(*) FILTER (WHERE state = 'failed') FROM jobs"
            ).fetchall()
            if failed:
                raise RuntimeError(f"{failed} jobs failed")
            if done == m:
                return
            time.sleep(0.01)


def jobs_per_second(url: str, count: int, m: int, module_dir: Path) -> float:
    env = _common.service_env(
        module_dir,
        SERVICE_WORKERS="bench_replica_jobs:jobs",
        SERVICE_JOBS__CONCURRENCY="10",
        SERVICE_DB__URL=url,
        SERVICE_LOG_FORMAT="json",
    )
    replicas = start_replicas(count, env)
    try:
        time.sleep(0.2)  # each replica's first (empty) claim is over: all idle
        trio.run(enqueue, url, m)
        began = time.perf_counter()
        until_done(url, m)
        return m / (time.perf_counter() - began)
    finally:
        stop_replicas(replicas)


def main() -> None:
    args = _common.parse_args(__doc__)
    m, rounds = (2_000, 1) if args.quick else (5_000, 3)
    with throwaway_cluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        module_dir = Path(tmp)
        _common.write_module(module_dir, "bench_replica_jobs", WORKER_MODULE)

        def measure(count: int) -> float:
            return jobs_per_second(cluster.create_database(), count, m, module_dir)

        medians = _common.alternate(
            rounds,
            {str(count): lambda count=count: measure(count) for count in (1, 2, 3)},
            warmup=0 if args.quick else 1,  # every measurement starts fresh processes anyway
        )
    one = medians["1"]
    _common.emit(BENCH, "jobs_per_s_1_replica", one, one, unit="jobs/s", target="the baseline")
    _common.emit(
        BENCH, "jobs_per_s_2_replicas", medians["2"], one, unit="jobs/s", target="reported"
    )
    _common.emit(BENCH, "jobs_per_s_3_replicas", medians["3"], one, unit="jobs/s", target=TARGET)


if __name__ == "__main__":
    main()
