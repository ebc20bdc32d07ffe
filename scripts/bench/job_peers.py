"""Our job queue against the ones a user would pick instead, each run as its users run it.

Workload 1, enqueue one at a time: N calls of the system's own "enqueue this job" in a loop
(each its own transaction), timed inside the enqueuing process.

Workload 2, drain. N no-op jobs are enqueued first (each system's own enqueue), then the
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

    from service import JobContext, job, job_poller

    jobs = job_poller(name="jobs")


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
#: the one the consumer knows); with "timed", print the rate of those calls.
HUEY_ENQUEUE = """
import sys, time, peer_huey
began = time.perf_counter()
for _ in range(int(sys.argv[1])):
    peer_huey.noop()
if sys.argv[2:] == ["timed"]:
    print(int(sys.argv[1]) / (time.perf_counter() - began))
"""

#: Ours, one `defer` after another, from an application's process.
OURS_ENQUEUE = """
import sys, time

import trio

import ours_noop
from service.resources import DatabaseSettings, open_database


async def main(url, count):
    async with open_database(DatabaseSettings(url=url)) as db:
        began = time.perf_counter()
        for _ in range(count):
            await ours_noop.noop.defer(db, ours_noop.Nothing())
        print(count / (time.perf_counter() - began))


trio.run(main, sys.argv[1], int(sys.argv[2]))
"""

PGQUEUER = """
    import asyncio
    import sys
    import time
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


    async def enqueue_each(count):
        queries = Queries(PsycopgDriver(await connect()))
        await queries.install()
        began = time.perf_counter()
        for _ in range(count):
            await queries.enqueue("noop", None)
        print(count / (time.perf_counter() - began))


    if __name__ == "__main__":
        if sys.argv[1] == "enqueue":
            asyncio.run(enqueue(int(sys.argv[2])))
        elif sys.argv[1] == "enqueue_each":
            asyncio.run(enqueue_each(int(sys.argv[2])))
        else:
            asyncio.run(run(create_pgqueuer))
"""

PROCRASTINATE = """
    import asyncio
    import sys
    import time

    from procrastinate import App, PsycopgConnector

    app = App(connector=PsycopgConnector(conninfo=DSN))


    @app.task(name="noop")
    async def noop():
        pass


    async def enqueue(count):
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            await noop.batch_defer_async(*[{}] * count)


    async def enqueue_each(count):
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            began = time.perf_counter()
            for _ in range(count):
                await noop.defer_async()
            print(count / (time.perf_counter() - began))


    async def work():
        async with app.open_async():
            await app.run_worker_async()


    if __name__ == "__main__":
        commands = {"enqueue": enqueue, "enqueue_each": enqueue_each}
        command = commands.get(sys.argv[1])
        asyncio.run(command(int(sys.argv[2])) if command else work())
"""


@dataclass(frozen=True)
class System:
    """How to fill a fresh database with N jobs, run the worker, and count what is left."""

    name: str
    fill: Callable[[Path, str, int], None]
    worker: Callable[[Path, str], subprocess.Popen[bytes]]
    left: Callable[[str], int]
    #: Jobs per second of N enqueue calls one after another, timed in the enqueuing process.
    enqueue_each: Callable[[Path, str, int], float]


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

    def enqueue_each(folder: Path, url: str, count: int) -> float:
        write(folder, "ours_noop", OURS)
        command = [sys.executable, "-c", OURS_ENQUEUE, url, str(count)]
        return rate_of(command, folder, env(folder, url))

    left = "SELECT COUNT(*) FROM jobs WHERE state <> 'done'"
    return System(f"ours_{engine}", fill, worker, counter(left), enqueue_each)


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

    def enqueue_each(folder: Path, url: str, count: int) -> float:
        write(folder, "peer_huey", HUEY, PATH=url.removeprefix("sqlite:///"))
        return rate_of([bench_python(), "-c", HUEY_ENQUEUE, str(count), "timed"], folder)

    return System("huey", fill, worker, counter("SELECT COUNT(*) FROM task"), enqueue_each)


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

    def enqueue_each(folder: Path, url: str, count: int) -> float:
        write(folder, f"peer_{name}", source, DSN=url)
        return rate_of([bench_python(), f"peer_{name}.py", "enqueue_each", str(count)], folder)

    return System(name, fill, worker, counter(left), enqueue_each)


def rate_of(command: list[str], folder: Path, env: dict[str, str] | None = None) -> float:
    """What `command` prints last: a rate."""
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.split()[-1])


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


Measure = Callable[[System, str], float]


def compare(engine: str, systems: list[System], measure: Measure, rounds: int) -> dict[str, float]:
    """The median of `measure` per system, rounds alternating which goes first."""
    samples: dict[str, list[float]] = {system.name: [] for system in systems}
    with tempfile.TemporaryDirectory() as name, databases(engine, Path(name)) as fresh:
        for number in range(rounds):
            shift = number % len(systems)
            for system in systems[shift:] + systems[:shift]:
                samples[system.name].append(measure(system, fresh()))
    return {name: statistics.median(values) for name, values in samples.items()}


def enqueue_each(count: int) -> Measure:
    def measure(system: System, url: str) -> float:
        with tempfile.TemporaryDirectory() as name:
            return system.enqueue_each(Path(name), url, count)

    return measure


def main() -> None:
    args = parse_args(__doc__)
    count = 2_000 if args.quick else 5_000
    rounds = 1 if args.quick else 3
    bench_python()
    engines = {
        "sqlite": [ours("sqlite"), huey()],
        "postgresql": [
            ours("postgresql"),
            asyncio_peer("pgqueuer", PGQUEUER, "SELECT COUNT(*) FROM pgqueuer"),
            asyncio_peer(
                "procrastinate",
                PROCRASTINATE,
                "SELECT COUNT(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')",
            ),
        ],
    }
    targets = {
        ("drain", "huey"): ">= 1.0x huey (SqliteHuey, 1 worker)",
        ("drain", "pgqueuer"): ">= 1.0x pgqueuer",
        ("enqueue_each", "huey"): ">= 0.5x huey",
    }
    workloads: dict[str, Measure] = {
        "drain": lambda system, url: drain(system, url, count),
        "enqueue_each": enqueue_each(count),
    }
    for engine, systems in engines.items():
        for workload, measure in workloads.items():
            rates = compare(engine, systems, measure, rounds)
            for peer in systems[1:]:
                emit(
                    BENCH,
                    f"{engine}_{workload}_vs_{peer.name}",
                    rates[systems[0].name],
                    rates[peer.name],
                    unit="jobs/s",
                    target=targets.get((workload, peer.name), "reported"),
                )
    print(json.dumps({"bench": BENCH, "jobs": count, "rounds": rounds}), file=sys.stderr)


if __name__ == "__main__":
    main()
