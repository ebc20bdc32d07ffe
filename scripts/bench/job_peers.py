"""Our job queue against the ones a user would pick instead, each run as its users run it.

Every system runs in its own processes, at its defaults: a worker process (its own, started as
its documentation says) and a producer process (an application enqueueing with the system's
own client API). Each measurement gets a fresh, empty database. Rounds alternate which system
goes first; medians over rounds are reported, ours as `value`, the peer as `baseline`.

Workloads (names for `--only`):

- `drain`: N no-op jobs are enqueued first (the system's batch API, untimed), then its worker
  process is started, and the rate is measured from the first job taken to the last one
  finished: the benchmark polls the system's own table every 2 ms for the jobs not yet
  finished (ours: not `done`; huey: rows left in `task`, which it deletes as it dequeues;
  pgqueuer: rows left in `pgqueuer`; procrastinate: `todo` and `doing` jobs), so the
  worker's start-up is not counted. jobs/s.
- `enqueue_each`: N calls of the system's "enqueue this one job" in a loop, each its own
  transaction, timed inside the producer (connection open and schema in place first). jobs/s.
- `enqueue_concurrent`: the same N calls from 10 callers at once, as a service's request
  handlers make them (each caller its share in a loop). Ours: 10 Trio tasks, whose
  concurrent `defer`s share transactions; pgqueuer and procrastinate: 10 asyncio tasks on
  the producer's connection (pool); huey, a synchronous client: 10 threads. jobs/s.
- `bulk`: N jobs in one call of the system's batch API, timed inside the producer. Ours:
  `JobTable(db).enqueue([...])` (what `jobs enqueue --count` runs: one transaction, one
  `executemany`); pgqueuer: `Queries.enqueue` with lists; procrastinate:
  `Task.batch_defer_async`; huey has no batch API: its documented way to enqueue many is
  `task.map(items)`, which enqueues them one by one (a transaction each). jobs/s.
- `steady`: the worker is started and warmed up (3 jobs, one at a time); then the producer
  enqueues one job per call at a fixed offered rate, on absolute deadlines (it never sleeps
  to make up for a slow call: it falls behind instead), for a fixed duration, while the worker
  drains. Offered: 1,000 jobs/s on SQLite, 100 jobs/s on PostgreSQL (one call is one durable
  commit there: one producer got through 150 to 1,800 such calls a second on this shared
  machine, depending on its load and on the system, so 100/s is one every system's producer
  can offer). Reported, over the steady part (from 1 s after the first
  enqueue to the last enqueue): `steady_rate`, the jobs started per second in that window;
  `steady_p50` / `steady_p99`, enqueue-to-start of the jobs enqueued in it (ms); and
  `steady_enqueued`, the rate the producer actually achieved (below the offered rate when
  its calls are slower than the pace; then `steady_rate` is bounded by it). A no-op job's
  start is its function's finish; recording the completion in the table (ours: batched
  into the poller's next turn; huey: nothing, it deleted the row when it took the job) is
  not in the latency. A worker slower than the offered rate falls behind: its rate is its
  capacity under that load, and its latencies grow with the duration (not a steady state).
- `latency`: enqueue-to-start into an idle worker. After 3 warm-up jobs (the first waits for
  the worker's start-up), the producer enqueues one job, the benchmark waits until it has
  started, waits a random gap, then the next: 200 samples (15 with `--quick`) on
  PostgreSQL, gaps uniform in 50-150 ms; 40 (5) on SQLite, gaps uniform in 50-1,050 ms, so a
  job arrives at a random point of each system's polling (a fixed gap would lock the phase
  and measure one point of it). The gaps come from one seeded
  generator: every system sees the same sequence. p50 and p99, ms.

How a start is timed (steady and latency): the job itself, first thing in its function,
sends one UDP datagram to the benchmark (127.0.0.1) carrying its number and the time on
CLOCK_MONOTONIC (`time.monotonic()`), which all processes of the machine share; the
producer takes the same clock just before its enqueue call. A latency is the difference:
the enqueue call itself (its commit), the worker's wake-up, claim and dispatch. The report
costs each system the same one `sendto` (a few us), and neither polling by the benchmark nor
the receiving thread's delay enters a measurement. The wake-ups differ, and are each
system's default: on PostgreSQL every system wakes on LISTEN/NOTIFY (ours, by default
there: the enqueue's transaction notifies `jobs`; pgqueuer: its table's trigger notifies,
its `QueueManager` listens; procrastinate: its defer's trigger notifies, and its worker
listens by default, `listen_notify=True`, polling every 5 s as well). On SQLite nothing
wakes a worker in another process: ours polls 10 ms after a turn that found jobs, the wait
growing x1.15 after each empty turn up to its poll interval, 1 s
(`SERVICE_JOBS__POLL_INTERVAL`; an enqueue in the worker's own process wakes it at once, not
measured here); huey's consumer polls 0.1 s after a task, the interval growing x1.15 after
each empty poll up to 10 s. The SQLite latency therefore compares two polling schedules,
not two wake-ups: the target line says so.

Systems, each at its defaults, in its own processes:
- ours: the worker is `python -m service` with `SERVICE_WORKERS` = a module declaring no-op
  `@job`s and the `jobs` poller (`JobsSettings` defaults: concurrency 64 and poll interval
  1 s when this was written; the run prints them), JSON logs to /dev/null as in production;
  the producer calls `defer` (one job) and `JobTable.enqueue` (many);
- SQLite peer: huey 3.5 `SqliteHuey` and its `huey_consumer` (1 worker thread); the producer
  calls the task (one job) or `task.map` (many);
- PostgreSQL peers: pgqueuer 1.6, its worker started from Python as `pgq run` would, with its
  defaults (batch size 10; its CLI crashes at start-up with typer 0.29), the producer calling
  `Queries.enqueue`; procrastinate 3.10, `run_worker_async()` (concurrency 1), the producer
  calling `defer_async` and `batch_defer_async`.
  pgqueuer runs on its psycopg driver (`PsycopgDriver`, one connection; the bench
  environment has no asyncpg, which its README's quick start uses). That driver's NOTIFY
  watcher holds the connection in `notifies(timeout=1.0)`, so a dequeue can wait up to 1 s:
  about a fifth of the idle-worker latency samples take ~1 s (its p99). Measured aside
  with asyncpg 0.32 (`AsyncpgDriver`), the same workload gave p50 15.5 / p99 29 ms instead
  of 27.6 / 1,034 ms, and the same drain rate.
Every worker's and every peer's own logging goes to /dev/null.

Durability is equal: SQLite in WAL mode with `synchronous = NORMAL` on both sides (huey's
default is FULL: the peer's storage sets NORMAL, as ours does); PostgreSQL with fsync and
synchronous commits on (`throwaway_cluster(durable=True)`), every system on its own fresh
database of one server per run.

The peers live in a bench-only environment (`.venv-bench`, from the hashed
`requirements/bench.txt`), created on first use: never a dependency of the service.

Targets (issue 12): SQLite drain >= 1.0x huey; PostgreSQL drain >= 1.0x pgqueuer; one-job
enqueue calls >= 0.5x huey; enqueue-to-start p50 ahead of every peer (ratio < 1.0: ours
divided by the peer's). Every other line is reported, without a target.

`--quick`: one round, small sizes (see `SIZES`); about 2 minutes on this shared 2-core
machine, most of it process start-ups (1-1.5 s for each of ours' processes) and durable
PostgreSQL commits. The full run: 3 rounds, about 16 minutes. The latency gaps are the same
in every round, so a poller's phase, and with it its SQLite latency, repeats round to round.

`--only` takes a comma-separated list of `ENGINE_WORKLOAD` (`sqlite_drain`,
`postgresql_latency`), engines (`sqlite`) or workloads (`steady`): the union is run.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import _common  # noqa: F401  # puts the repository root on sys.path
import psycopg
from _common import ROOT, emit, parse_args, service_env

from service.jobs import JobsSettings
from service.testing.postgres import PostgresCluster, throwaway_cluster

BENCH = "job_peers"
BENCH_ENV = ROOT / ".venv-bench"
REQUIREMENTS = ROOT / "requirements" / "bench.txt"
POLL = 0.002
PATIENCE = 120.0
ENGINES = ("sqlite", "postgresql")
WORKLOADS = ("drain", "enqueue_each", "enqueue_concurrent", "bulk", "steady", "latency")
#: How many callers enqueue at once in `enqueue_concurrent`.
CALLERS = 10
#: Jobs enqueued one at a time (and waited for) before a steady or latency measurement.
WARMUP = 3
#: The start of a steady run left out: the worker catching up with the first jobs.
RAMP = 1.0
#: Offered rate of the steady workload, jobs/s, per engine.
STEADY_RATE = {"sqlite": 1_000, "postgresql": 100}
#: The latency workload's gaps between samples: uniform in [low, high] seconds, per engine.
GAPS = {"sqlite": (0.05, 1.05), "postgresql": (0.05, 0.15)}
SEED = 12
#: Per workload and engine, (with --quick, without): jobs (drain, enqueue_each, bulk), seconds
#: of offered load (steady), samples (latency).
SIZES: dict[str, dict[str, tuple[float, float]]] = {
    "drain": {"sqlite": (1_000, 5_000), "postgresql": (200, 2_000)},
    "enqueue_each": {"sqlite": (1_000, 5_000), "postgresql": (150, 1_000)},
    "bulk": {"sqlite": (2_000, 10_000), "postgresql": (2_000, 10_000)},
    "steady": {"sqlite": (2.5, 10.0), "postgresql": (2.5, 10.0)},
    "latency": {"sqlite": (5, 40), "postgresql": (15, 200)},
}

#: In every system's module: how a job tells the benchmark it has started.
REPORT = """
    import json
    import socket
    import sys
    import time

    _REPORTS = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


    async def in_asyncio_tasks(call, callers, each):
        import asyncio

        async def caller():
            for _ in range(each):
                await call()

        await asyncio.gather(*(caller() for _ in range(callers)))


    def report(seq):
        # Its number and the time on CLOCK_MONOTONIC, which every process here shares.
        _REPORTS.sendto(f"{seq} {time.monotonic()!r}".encode(), ("127.0.0.1", REPORT_PORT))


    async def serve(enqueue, enqueue_noop, enqueue_noops, sleep, readline, concurrently):
        # The producer: the benchmark's commands, one a line on stdin, one answer a line.
        print("ready", flush=True)
        while line := await readline():
            command, *numbers = (int(word) if word.isdigit() else word for word in line.split())
            if command == "one":  # the time just before the call
                [seq] = numbers
                began = time.monotonic()
                await enqueue(seq)
                answer = repr(began)
            elif command == "steady":  # one call per 1/rate s on absolute deadlines
                first, count, rate = numbers
                starts = []
                origin = time.monotonic()
                for index in range(count):
                    wait = origin + index / rate - time.monotonic()
                    if wait > 0:
                        await sleep(wait)
                    starts.append(time.monotonic())
                    await enqueue(first + index)
                answer = json.dumps(starts)
            elif command == "each":  # jobs/s of one call per job
                [count] = numbers
                began = time.perf_counter()
                for _ in range(count):
                    await enqueue_noop()
                answer = repr(count / (time.perf_counter() - began))
            elif command == "concurrent":  # jobs/s of one call per job, from many callers
                count, callers = numbers
                began = time.perf_counter()
                await concurrently(enqueue_noop, callers, count // callers)
                answer = repr(callers * (count // callers) / (time.perf_counter() - began))
            elif command == "bulk":  # jobs/s of one batch call
                [count] = numbers
                began = time.perf_counter()
                await enqueue_noops(count)
                answer = repr(count / (time.perf_counter() - began))
            else:
                raise ValueError(line)
            print(answer, flush=True)
"""

OURS = """
    import sys
    from functools import partial

    import trio
    from pydantic import BaseModel

    from service import JobContext, job, job_poller
    from service.jobs import JobTable
    from service.resources import DatabaseSettings, open_database

    jobs = job_poller(name="jobs")


    class Nothing(BaseModel):
        pass


    class Numbered(BaseModel):
        seq: int


    @job()
    async def noop(payload: Nothing, ctx: JobContext) -> None:
        pass


    @job()
    async def timed(payload: Numbered, ctx: JobContext) -> None:
        report(payload.seq)


    async def produce(url):
        async with open_database(DatabaseSettings(url=url)) as db:
            table = JobTable(db)

            async def enqueue(seq):
                await timed.defer(db, Numbered(seq=seq))

            async def enqueue_noop():
                await noop.defer(db, Nothing())

            async def enqueue_noops(count):
                await table.enqueue([{"type": "noop"}] * count)

            async def concurrently(call, callers, each):
                async def caller():
                    for _ in range(each):
                        await call()

                async with trio.open_nursery() as nursery:
                    for _ in range(callers):
                        nursery.start_soon(caller)

            readline = partial(trio.to_thread.run_sync, sys.stdin.readline)
            await serve(enqueue, enqueue_noop, enqueue_noops, trio.sleep, readline, concurrently)
"""

HUEY = """
    import asyncio

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


    @huey.task()
    def timed(seq):
        report(seq)


    def produce():
        async def enqueue(seq):
            timed(seq)

        async def enqueue_noop():
            noop()

        async def enqueue_noops(count):
            noop.map([()] * count)  # no batch API: `map` enqueues them one by one

        async def readline():
            return sys.stdin.readline()

        async def concurrently(call, callers, each):
            # A synchronous client: concurrent callers are threads (a threaded web server's).
            from concurrent.futures import ThreadPoolExecutor

            def caller(_):
                for _ in range(each):
                    noop()

            with ThreadPoolExecutor(callers) as threads:
                list(threads.map(caller, range(callers)))

        asyncio.run(
            serve(enqueue, enqueue_noop, enqueue_noops, asyncio.sleep, readline, concurrently)
        )
"""

#: Ours' producer: the module imported, as an application imports its job types.
OURS_PRODUCER = "import sys, trio, ours_jobs; trio.run(ours_jobs.produce, sys.argv[1])"

PGQUEUER = """
    import asyncio
    from contextlib import asynccontextmanager
    from functools import partial

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

        @pgq.entrypoint("timed")
        async def timed(job):
            report(int(job.payload))

        try:
            yield pgq
        finally:
            await connection.close()


    async def produce():
        queries = Queries(PsycopgDriver(await connect()))
        await queries.install()

        async def enqueue(seq):
            await queries.enqueue("timed", str(seq).encode())

        async def enqueue_noop():
            await queries.enqueue("noop", None)

        async def enqueue_noops(count):
            await queries.enqueue(["noop"] * count, [None] * count, [0] * count)

        readline = partial(asyncio.to_thread, sys.stdin.readline)
        await serve(
            enqueue, enqueue_noop, enqueue_noops, asyncio.sleep, readline, in_asyncio_tasks
        )


    def main(command):
        asyncio.run(produce() if command == "produce" else run(create_pgqueuer))
"""

PROCRASTINATE = """
    import asyncio
    from functools import partial

    from procrastinate import App, PsycopgConnector

    app = App(connector=PsycopgConnector(conninfo=DSN))


    @app.task(name="noop")
    async def noop():
        pass


    @app.task(name="timed")
    async def timed(seq):
        report(seq)


    async def produce():
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

            async def enqueue(seq):
                await timed.defer_async(seq=seq)

            async def enqueue_noop():
                await noop.defer_async()

            async def enqueue_noops(count):
                await noop.batch_defer_async(*[{}] * count)

            readline = partial(asyncio.to_thread, sys.stdin.readline)
            await serve(
                enqueue, enqueue_noop, enqueue_noops, asyncio.sleep, readline, in_asyncio_tasks
            )


    async def work():
        async with app.open_async():
            await app.run_worker_async()


    def main(command):
        asyncio.run(produce() if command == "produce" else work())
"""


@dataclass(frozen=True)
class System:
    """How to run one system: its modules, its producer and worker commands, its table."""

    name: str
    #: Writes the system's module(s) into the folder: (folder, database url, report port).
    setup: Callable[[Path, str, int], None]
    producer: Callable[[Path, str], list[str]]
    worker: Callable[[Path, str], list[str]]
    env: Callable[[Path, str], dict[str, str]]
    #: SQL counting the jobs not finished yet.
    left: str


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


def write(folder: Path, name: str, source: str, **constants: object) -> None:
    header = "".join(f"{key} = {value!r}\n" for key, value in constants.items())
    text = header + textwrap.dedent(REPORT) + textwrap.dedent(source)
    (folder / f"{name}.py").write_text(text, encoding="utf-8")


def ours(engine: str) -> System:
    def setup(folder: Path, url: str, port: int) -> None:
        write(folder, "ours_jobs", OURS, REPORT_PORT=port)

    def env(folder: Path, url: str) -> dict[str, str]:
        return service_env(
            folder,
            SERVICE_WORKERS="ours_jobs:jobs",
            SERVICE_DB__URL=url,
            SERVICE_LOG_FORMAT="json",
        )

    return System(
        name=f"ours_{engine}",
        setup=setup,
        producer=lambda folder, url: [sys.executable, "-c", OURS_PRODUCER, url],
        worker=lambda folder, url: [sys.executable, "-m", "service"],
        env=env,
        left="SELECT COUNT(*) FROM jobs WHERE state <> 'done'",
    )


def peer_env(folder: Path, url: str) -> dict[str, str]:
    return {"PYTHONPATH": str(folder), "PATH": "/usr/bin:/bin"}


def huey() -> System:
    def setup(folder: Path, url: str, port: int) -> None:
        write(folder, "peer_huey", HUEY, PATH=url.removeprefix("sqlite:///"), REPORT_PORT=port)

    return System(
        name="huey",
        setup=setup,
        producer=lambda folder, url: [bench_python(), "-c", "import peer_huey as m; m.produce()"],
        worker=lambda folder, url: [
            bench_python(),
            str(BENCH_ENV / "bin" / "huey_consumer"),
            "peer_huey.huey",
        ],
        env=peer_env,
        left="SELECT COUNT(*) FROM task",
    )


def asyncio_peer(name: str, source: str, left: str) -> System:
    module = f"peer_{name}"

    def setup(folder: Path, url: str, port: int) -> None:
        write(folder, module, source, DSN=url, REPORT_PORT=port)

    def command(action: str) -> Callable[[Path, str], list[str]]:
        # Imported, not run as __main__: procrastinate warns about an app in a main module.
        return lambda folder, url: [
            bench_python(),
            "-c",
            f"import {module}; {module}.main({action!r})",
        ]

    return System(name, setup, command("produce"), command("work"), peer_env, left)


def pgqueuer() -> System:
    return asyncio_peer("pgqueuer", PGQUEUER, "SELECT COUNT(*) FROM pgqueuer")


def procrastinate() -> System:
    left = "SELECT COUNT(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
    return asyncio_peer("procrastinate", PROCRASTINATE, left)


class Reports:
    """The UDP socket jobs report their start to: job number -> CLOCK_MONOTONIC seconds."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Room for a burst while the receiving thread waits for the GIL (4 MB is rmem_max here).
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port: int = self._socket.getsockname()[1]
        self.started: dict[int, float] = {}
        self._arrivals: list[int] = []  # in the order they came
        self._arrived = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._receive, name="reports", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed:
            try:
                data = self._socket.recv(128)
            except TimeoutError:
                continue
            seq, stamp = data.split()
            with self._arrived:
                self.started.setdefault(int(seq), float(stamp))  # a re-delivery: the first
                self._arrivals.append(int(seq))
                self._arrived.notify_all()

    def wait(self, seqs: range, alive: Callable[[], None], patience: float = PATIENCE) -> None:
        """Until every job of `seqs` has reported its start; `alive()` raises if the worker
        has died."""
        deadline = time.monotonic() + patience
        with self._arrived:
            missing = set(seqs) - self.started.keys()
            seen = len(self._arrivals)
            while missing:
                alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{len(missing)} of {len(seqs)} jobs never reported")
                self._arrived.wait(0.2)
                missing.difference_update(self._arrivals[seen:])
                seen = len(self._arrivals)

    def close(self) -> None:
        self._closed = True
        self._thread.join()
        self._socket.close()


class Producer:
    """A system's producer process: one command a line, one answer a line."""

    def __init__(self, system: System, folder: Path, url: str) -> None:
        self._errors = (folder / "producer.err").open("w+")
        self.command = system.producer(folder, url)
        self.process = subprocess.Popen(
            self.command,
            cwd=folder,
            env=system.env(folder, url),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
            text=True,
        )
        self._answer("start")

    def ask(self, *words: object) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(" ".join(map(str, words)) + "\n")
        self.process.stdin.flush()
        return self._answer(words[0])

    def _answer(self, command: object) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            self._errors.seek(0)
            raise RuntimeError(
                f"producer {self.command[:3]} exited ({self.process.returncode}) at"
                f" {command}:\n{self._errors.read()[-3000:]}"
            )
        return line.strip()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(30)
        finally:
            self._errors.close()
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def producing(system: System, folder: Path, url: str) -> Iterator[Producer]:
    producer = Producer(system, folder, url)
    try:
        yield producer
    finally:
        producer.close()


@contextlib.contextmanager
def working(system: System, folder: Path, url: str) -> Iterator[Callable[[], None]]:
    """The system's worker process, its output to /dev/null; yields a check that it lives."""
    process = subprocess.Popen(
        system.worker(folder, url),
        cwd=ROOT if system.name.startswith("ours") else folder,
        env=system.env(folder, url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def alive() -> None:
        if process.poll() is not None:
            raise RuntimeError(f"{system.name}: the worker exited ({process.returncode})")

    try:
        yield alive
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def counter(sql: str, url: str) -> int:
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            return int(db.execute(sql).fetchone()[0])
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


Metrics = dict[str, float]
Measure = Callable[[System, Path, str, Reports], Metrics]


def drain(count: int) -> Measure:
    """Jobs per second, first job taken to last job finished."""

    def measure(system: System, folder: Path, url: str, reports: Reports) -> Metrics:
        with producing(system, folder, url) as producer:
            producer.ask("bulk", count)
        assert counter(system.left, url) == count, f"{system.name}: the fill fell short"
        with working(system, folder, url) as alive:
            deadline = time.monotonic() + PATIENCE
            first = None
            while (left := counter(system.left, url)) > 0:
                if first is None and left < count:
                    first = time.perf_counter()
                alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{system.name}: {left} of {count} left")
                time.sleep(POLL)
            last = time.perf_counter()
        assert first is not None
        return {"drain": (count - 1) / (last - first)}

    return measure


def producer_rate(metric: str, *command: object) -> Measure:
    """A rate the producer measures itself, in jobs/s: of one `command`."""

    def measure(system: System, folder: Path, url: str, reports: Reports) -> Metrics:
        with producing(system, folder, url) as producer:
            return {metric: float(producer.ask(*command))}

    return measure


def warm_up(producer: Producer, reports: Reports, alive: Callable[[], None]) -> None:
    """A few jobs one at a time, each waited for: the first waits for the worker's start-up."""
    for seq in range(WARMUP):
        producer.ask("one", seq)
        reports.wait(range(seq, seq + 1), alive)
        time.sleep(0.05)


def steady(rate: int, seconds: float) -> Measure:
    def measure(system: System, folder: Path, url: str, reports: Reports) -> Metrics:
        count = round(rate * seconds)
        seqs = range(WARMUP, WARMUP + count)
        with producing(system, folder, url) as producer, working(system, folder, url) as alive:
            warm_up(producer, reports, alive)
            enqueued = dict(
                zip(seqs, json.loads(producer.ask("steady", WARMUP, count, rate)), strict=True)
            )
            reports.wait(seqs, alive)
        began, ended = enqueued[seqs[0]] + RAMP, enqueued[seqs[-1]]
        ran = sum(began <= reports.started[seq] <= ended for seq in seqs)
        latencies = [reports.started[seq] - at for seq, at in enqueued.items() if at >= began]
        p50, p99 = percentiles(latencies)
        return {
            "steady_rate": ran / (ended - began),
            "steady_p50": p50,
            "steady_p99": p99,
            "steady_enqueued": (count - 1) / (ended - enqueued[seqs[0]]),
        }

    return measure


def latency(samples: int, gaps: tuple[float, float]) -> Measure:
    def measure(system: System, folder: Path, url: str, reports: Reports) -> Metrics:
        pauses = random.Random(SEED)  # the same gaps for every system
        latencies = []
        with producing(system, folder, url) as producer, working(system, folder, url) as alive:
            warm_up(producer, reports, alive)
            for seq in range(WARMUP, WARMUP + samples):
                time.sleep(pauses.uniform(*gaps))
                enqueued = float(producer.ask("one", seq))
                reports.wait(range(seq, seq + 1), alive)
                latencies.append(reports.started[seq] - enqueued)
        p50, p99 = percentiles(latencies)
        return {"latency_p50": p50, "latency_p99": p99}

    return measure


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """p50 and p99 in ms."""
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


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


def compare(
    systems: list[System], measure: Measure, rounds: int, fresh: Callable[[], str]
) -> dict[str, Metrics]:
    """The median of each metric per system, rounds alternating which system goes first."""
    samples: dict[str, list[Metrics]] = {system.name: [] for system in systems}
    for number in range(rounds):
        shift = number % len(systems)
        for system in systems[shift:] + systems[:shift]:
            with tempfile.TemporaryDirectory() as name:
                folder, url, reports = Path(name), fresh(), Reports()
                began = time.perf_counter()
                try:
                    system.setup(folder, url, reports.port)
                    samples[system.name].append(measure(system, folder, url, reports))
                finally:
                    reports.close()
                sample = {key: round(value, 3) for key, value in samples[system.name][-1].items()}
                took = round(time.perf_counter() - began, 1)
                print(
                    json.dumps({"system": system.name, "seconds": took, **sample}), file=sys.stderr
                )
    return {
        name: {key: statistics.median(values[key] for values in runs) for key in runs[0]}
        for name, runs in samples.items()
    }


UNITS = {"steady_p50": "ms", "steady_p99": "ms", "latency_p50": "ms", "latency_p99": "ms"}


def targets(engine: str, peer: str) -> dict[str, str]:
    poll = JobsSettings().poll_interval
    found = {
        ("sqlite", "drain", "huey"): ">= 1.0x huey (SqliteHuey, 1 worker)",
        ("postgresql", "drain", "pgqueuer"): ">= 1.0x pgqueuer",
        ("sqlite", "enqueue_each", "huey"): ">= 0.5x huey",
        (
            "sqlite",
            "enqueue_concurrent",
            "huey",
        ): ">= 0.5x huey (concurrent calls may share a commit)",
        ("sqlite", "latency_p50", "huey"): (
            "< 1.0x, but not a wake-up comparison: across processes on SQLite ours polls 10 ms"
            f" after a turn that found jobs (x1.15 per empty turn, to {poll:g} s), huey 0.1 s"
            " after a task (x1.15 per empty poll, to 10 s)"
        ),
        ("postgresql", "latency_p50", peer): f"< 1.0x {peer} (all wake on LISTEN/NOTIFY)",
    }
    return {
        metric: target
        for (of_engine, metric, of_peer), target in found.items()
        if (of_engine, of_peer) == (engine, peer)
    }


def selected(only: str | None) -> set[tuple[str, str]]:
    every = {(engine, workload) for engine in ENGINES for workload in WORKLOADS}
    if not only:
        return every
    chosen = set()
    for given in only.split(","):
        word = given.strip()
        matched = {pair for pair in every if word in (pair[0], pair[1], f"{pair[0]}_{pair[1]}")}
        if not matched:
            raise SystemExit(f"--only: no workload {word!r} (say e.g. sqlite_drain, latency)")
        chosen |= matched
    return chosen


def main() -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--only",
            metavar="LIST",
            help="comma-separated ENGINE_WORKLOAD, ENGINE or WORKLOAD names (see above)",
        )

    args = parse_args(__doc__, options)
    chosen = selected(args.only)
    quick = args.quick
    rounds = 1 if quick else 3
    sizes = {
        workload: {engine: pair[0 if quick else 1] for engine, pair in by_engine.items()}
        for workload, by_engine in SIZES.items()
    }
    bench_python()
    engines = {
        "sqlite": [ours("sqlite"), huey()],
        "postgresql": [ours("postgresql"), pgqueuer(), procrastinate()],
    }
    for engine, systems in engines.items():
        workloads: dict[str, Measure] = {
            "drain": drain(int(sizes["drain"][engine])),
            "enqueue_each": producer_rate(
                "enqueue_each", "each", int(sizes["enqueue_each"][engine])
            ),
            "enqueue_concurrent": producer_rate(
                "enqueue_concurrent", "concurrent", int(sizes["enqueue_each"][engine]), CALLERS
            ),
            "bulk": producer_rate("bulk_enqueue", "bulk", int(sizes["bulk"][engine])),
            "steady": steady(STEADY_RATE[engine], sizes["steady"][engine]),
            "latency": latency(int(sizes["latency"][engine]), GAPS[engine]),
        }
        wanted = [name for name in WORKLOADS if (engine, name) in chosen]
        if not wanted:
            continue
        with tempfile.TemporaryDirectory() as name, databases(engine, Path(name)) as fresh:
            for workload in wanted:
                results = compare(systems, workloads[workload], rounds, fresh)
                ours_results = results[systems[0].name]
                for peer in systems[1:]:
                    wanted_targets = targets(engine, peer.name)
                    for metric, value in ours_results.items():
                        emit(
                            BENCH,
                            f"{engine}_{metric}_vs_{peer.name}",
                            value,
                            results[peer.name][metric],
                            unit=UNITS.get(metric, "jobs/s"),
                            target=wanted_targets.get(metric, "reported"),
                        )
    defaults = JobsSettings()
    summary = {
        "bench": BENCH,
        "rounds": rounds,
        "sizes": sizes,
        "steady_offered": STEADY_RATE,
        "latency_gaps": GAPS,
        "ours": {"concurrency": defaults.concurrency, "poll_interval": defaults.poll_interval},
    }
    print(json.dumps(summary), file=sys.stderr)


if __name__ == "__main__":
    main()
