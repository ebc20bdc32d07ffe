"""Our job queue against the ones a user would pick instead, each run as its users run it.

Workload: drain. N no-op jobs are enqueued first (each system's own enqueue), then the
system's worker process is started at its defaults, and the rate is measured from the first
job taken to the last one finished: the benchmark polls the system's own table every 2 ms for
the jobs not yet finished (ours: not `done`; huey: rows left in `task`, which it deletes as it
dequeues; pgqueuer: rows left in `pgqueuer`; procrastinate: `todo` and `doing` jobs), so a
worker's start-up time is not counted. Rounds alternate the systems; medians are reported.

Systems, each at its defaults, in its own process:
- ours: `python -m service` with `SERVICE_WORKERS` = a module declaring a no-op `@job` and
  the `jobs` poller (concurrency 10, JSON logs to /dev/null, as in production);
- SQLite peer: huey 3.5 `SqliteHuey` and its `huey_consumer` (1 worker thread);
- PostgreSQL peers: pgqueuer 1.6 (started from Python as `pgq run` would, with its defaults:
  batch size 10; its CLI crashes at start-up with typer 0.29) and procrastinate 3.10
  (`run_worker_async`, concurrency 1).

Durability is equal: SQLite in WAL mode with `synchronous = NORMAL` on both sides (huey's
default is FULL: the peer's storage sets NORMAL, as ours does); PostgreSQL with fsync and
synchronous commits on (`throwaway_cluster(durable=True)`), every system on its own fresh
database of one server.

The peers live in a bench-only environment (`.venv-bench`, from the hashed
`requirements/bench.txt`), created on first use: never a dependency of the service.

Targets (issue 12): SQLite drain >= 1.0x huey; PostgreSQL drain >= 1.0x pgqueuer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import _common  # noqa: F401  # puts the repository root on sys.path
import psycopg
from _common import ROOT, emit, parse_args, service_env

from service.testing.postgres import PostgresCluster, throwaway_cluster

BENCH = "job_peers"
BENCH_ENV = ROOT / ".venv-bench"
REQUIREMENTS = ROOT / "requirements" / "bench.txt"
POLL = 0.002
PATIENCE = 120.0

OURS = """
    from pydantic import BaseModel

    from service import JobContext, job
    from service.workers.jobs import jobs


    class Nothing(BaseModel):
        pass


    @job()
    async def noop(payload: Nothing, ctx: JobContext) -> None:
        pass
"""

HUEY = """
    from huey import SqliteHuey
    from huey.storage import SqliteStorage


    class NormalSync(SqliteStorage):
        # WAL (huey's default) with synchronous = NORMAL, as the service runs SQLite.
        def _create_connection(self):
            connection = super()._create_connection()
            connection.execute("pragma synchronous = 1")
            return connection


    class BenchHuey(SqliteHuey):
        storage_class = NormalSync


    huey = BenchHuey(filename=PATH)


    @huey.task()
    def noop():
        pass
"""

#: Enqueue N, as an application calls a task (importing the module, so the task's name is
#: the one the consumer knows).
HUEY_ENQUEUE = "import sys, peer_huey\nfor _ in range(int(sys.argv[1])): peer_huey.noop()"

PGQUEUER = """
    import asyncio
    import sys
    from contextlib import asynccontextmanager

    import psycopg
    from pgqueuer import PgQueuer, PsycopgDriver, Queries, run


    async def connect():
        return await psycopg.AsyncConnection.connect(DSN, autocommit=True)


    @asynccontextmanager
    async def create_pgqueuer():
        connection = await connect()
        pgq = PgQueuer(PsycopgDriver(connection))

        @pgq.entrypoint("noop")
        async def noop(job):
            pass

        try:
            yield pgq
        finally:
            await connection.close()


    async def enqueue(count):
        queries = Queries(PsycopgDriver(await connect()))
        await queries.install()
        await queries.enqueue(["noop"] * count, [None] * count, [0] * count)


    if __name__ == "__main__":
        if sys.argv[1] == "enqueue":
            asyncio.run(enqueue(int(sys.argv[2])))
        else:
            asyncio.run(run(create_pgqueuer))
"""

PROCRASTINATE = """
    import asyncio
    import sys

    from procrastinate import App, PsycopgConnector

    app = App(connector=PsycopgConnector(conninfo=DSN))


    @app.task(name="noop")
    async def noop():
        pass


    async def enqueue(count):
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            await noop.batch_defer_async(*[{}] * count)


    async def work():
        async with app.open_async():
            await app.run_worker_async()


    if __name__ == "__main__":
        asyncio.run(enqueue(int(sys.argv[2])) if sys.argv[1] == "enqueue" else work())
"""


@dataclass(frozen=True)
class System:
    """How to fill a fresh database with N jobs, run the worker, and count what is left."""

    name: str
    fill: Callable[[Path, str, int], None]
    worker: Callable[[Path, str], subprocess.Popen[bytes]]
    left: Callable[[str], int]


def bench_python() -> str:
    """The bench-only environment's interpreter, made (or brought up to date) first."""
    stamp = BENCH_ENV / ".requirements-sha256"
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if not (stamp.exists() and stamp.read_text() == want):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(BENCH_ENV)], check=True)
        pip = [str(BENCH_ENV / "bin" / "pip"), "install", "--quiet", "--require-hashes"]
        subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
        stamp.write_text(want)
    return str(BENCH_ENV / "bin" / "python")


def write(folder: Path, name: str, source: str, **constants: str) -> None:
    header = "".join(f"{key} = {value!r}\n" for key, value in constants.items())
    (folder / f"{name}.py").write_text(header + textwrap.dedent(source), encoding="utf-8")


def ours(engine: str) -> System:
    def env(folder: Path, url: str) -> dict[str, str]:
        return service_env(
            folder,
            SERVICE_WORKERS="ours_noop:jobs",
            SERVICE_DB__URL=url,
            SERVICE_LOG_FORMAT="json",
        )

    def fill(folder: Path, url: str, count: int) -> None:
        write(folder, "ours_noop", OURS)
        command = ["jobs", "enqueue", "--count", str(count), "--payload", '{"type": "noop"}']
        subprocess.run(
            [sys.executable, "-m", "service", *command],
            env=env(folder, url),
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def worker(folder: Path, url: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "service"],
            env=env(folder, url),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    left = "SELECT COUNT(*) FROM jobs WHERE state <> 'done'"
    return System(f"ours_{engine}", fill, worker, counter(left))


def huey() -> System:
    def fill(folder: Path, url: str, count: int) -> None:
        path = url.removeprefix("sqlite:///")
        write(folder, "peer_huey", HUEY, PATH=path)
        subprocess.run([bench_python(), "-c", HUEY_ENQUEUE, str(count)], cwd=folder, check=True)

    def worker(folder: Path, url: str) -> subprocess.Popen[bytes]:
        consumer = str(BENCH_ENV / "bin" / "huey_consumer")
        return subprocess.Popen(
            [bench_python(), consumer, "peer_huey.huey"],
            cwd=folder,
            env={"PYTHONPATH": str(folder), "PATH": "/usr/bin:/bin"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    return System("huey", fill, worker, counter("SELECT COUNT(*) FROM task"))


def asyncio_peer(name: str, source: str, left: str) -> System:
    def fill(folder: Path, url: str, count: int) -> None:
        write(folder, f"peer_{name}", source, DSN=url)
        subprocess.run(
            [bench_python(), f"peer_{name}.py", "enqueue", str(count)], cwd=folder, check=True
        )

    def worker(folder: Path, url: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [bench_python(), f"peer_{name}.py", "work"],
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    return System(name, fill, worker, counter(left))


def counter(sql: str) -> Callable[[str], int]:
    def count(url: str) -> int:
        if url.startswith("sqlite:///"):
            with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
                return int(db.execute(sql).fetchone()[0])
        with psycopg.connect(url, autocommit=True) as connection:
            row = connection.execute(sql).fetchone()
            assert row is not None
            return int(row[0])

    return count


def drain(system: System, url: str, count: int) -> float:
    """Jobs per second, first job taken to last job finished."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        system.fill(folder, url, count)
        assert system.left(url) == count, f"{system.name}: the fill did not enqueue {count}"
        process = system.worker(folder, url)
        try:
            deadline = time.monotonic() + PATIENCE
            first = None
            while (left := system.left(url)) > 0:
                if first is None and left < count:
                    first = time.perf_counter()
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"{system.name}: {left} of {count} left")
                time.sleep(POLL)
            last = time.perf_counter()
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    assert first is not None
    return (count - 1) / (last - first)


@contextlib.contextmanager
def databases(engine: str, folder: Path) -> Iterator[Callable[[], str]]:
    """A maker of fresh, empty databases of `engine`."""
    if engine == "sqlite":
        made = iter(range(1_000_000))
        yield lambda: f"sqlite:///{folder / f'db{next(made)}.db'}"
        return
    cluster: PostgresCluster
    with throwaway_cluster(durable=True) as cluster:
        yield cluster.create_database


def compare(engine: str, systems: list[System], count: int, rounds: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {system.name: [] for system in systems}
    with tempfile.TemporaryDirectory() as name, databases(engine, Path(name)) as fresh:
        for number in range(rounds):
            shift = number % len(systems)
            for system in systems[shift:] + systems[:shift]:
                samples[system.name].append(drain(system, fresh(), count))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    args = parse_args(__doc__)
    count = 2_000 if args.quick else 5_000
    rounds = 1 if args.quick else 3
    bench_python()
    sqlite = compare("sqlite", [ours("sqlite"), huey()], count, rounds)
    emit(
        BENCH,
        "sqlite_drain_vs_huey",
        sqlite["ours_sqlite"],
        sqlite["huey"],
        unit="jobs/s",
        target=">= 1.0x huey (SqliteHuey, 1 worker)",
    )
    postgres = compare(
        "postgresql",
        [
            ours("postgresql"),
            asyncio_peer("pgqueuer", PGQUEUER, "SELECT COUNT(*) FROM pgqueuer"),
            asyncio_peer(
                "procrastinate",
                PROCRASTINATE,
                "SELECT COUNT(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')",
            ),
        ],
        count,
        rounds,
    )
    for peer, target in [("pgqueuer", ">= 1.0x pgqueuer"), ("procrastinate", "reported")]:
        emit(
            BENCH,
            f"postgresql_drain_vs_{peer}",
            postgres["ours_postgresql"],
            postgres[peer],
            unit="jobs/s",
            target=target,
        )
    print(json.dumps({"bench": BENCH, "jobs": count, "rounds": rounds}), file=sys.stderr)


if __name__ == "__main__":
    main()
