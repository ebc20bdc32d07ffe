"""Jobs per second through the real poller on SQLite vs the same SQL in a raw sqlite3 loop.

Candidate: the `jobs` worker (`service.workers.jobs`) under the real supervisor
(`service.testing.supervised`), on a fresh temporary file database opened with `open_sqlite`
(WAL, `synchronous = NORMAL`, four connections, each transaction `BEGIN IMMEDIATE` in a worker
thread), with `JobsSettings(concurrency=64, lease_seconds=60, job_timeout=10)`. Once the
poller is up and idle, a producer task enqueues N jobs of type "tick" (a no-op handler) in
batches of 100 through `JobTable.enqueue`, as a real producer would; the clock runs from the
first enqueue until the last job is `done` (the producer then polls `JobTable.stats()` every
5 ms). Each job costs the poller a task, a per-job timeout scope, the handler, a `job.done`
log line, and a share of a turn: one transaction that records the jobs done since the last
turn and claims as many as there are free slots.

Two candidate metrics: with the real JSON log pipeline writing to /dev/null (the poller logs
`job.done` per job), and with the level at "warning" (that line filtered out), so the cost of
the per-job log line shows.

Baseline: the same statements from `service/jobs/table.py` in one thread, no Trio, on a
connection opened the same way (autocommit, WAL, `synchronous = NORMAL`, explicit
`BEGIN IMMEDIATE` ... `COMMIT` around each statement group as the service does): per batch of
100, INSERT the batch (fresh ids, trace ids and JSON payloads, as `enqueue` makes them), then
claim in groups of up to 64 with the same `UPDATE ... RETURNING`, decode each payload and
complete each claimed group with the same `UPDATE ... WHERE id IN (...)`, one transaction a
group (the best case of the poller's group commit).

A third line compares with the raw loop acknowledging each job in its own transaction, the
statements the poller ran before its group commit.

Target: >= 0.5x (ratio = candidate / baseline jobs per second; higher is better).
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import _common
import trio

import service
from service import logs
from service.jobs import JobsSettings, JobTable
from service.logs import new_trace_id
from service.resources.migrations import migrate
from service.resources.sqlite import BUSY_TIMEOUT_MS, open_sqlite
from service.testing import provide, supervised
from service.workers import ticker  # noqa: F401  # the `tick` job type
from service.workers.jobs import jobs

BENCH = "job_throughput"
BATCH = 100
CONCURRENCY = 64
SETTINGS = JobsSettings(concurrency=CONCURRENCY, lease_seconds=60, job_timeout=10)

# The statements of service/jobs/table.py (enqueue, claim, complete), verbatim.
INSERT = (
    "INSERT INTO jobs (id, payload, trace_id, state, available_at, created_at,"
    " updated_at) VALUES (?, ?, ?, 'pending', ?, ?, ?)"
)
CLAIM = (
    "UPDATE jobs SET state = 'leased', attempts = attempts + 1, lease_owner = ?,"
    " lease_expires_at = ?, updated_at = ?"
    " WHERE id IN (SELECT id FROM jobs"
    "  WHERE (state = 'pending' AND available_at <= ?)"
    "     OR (state = 'leased' AND lease_expires_at <= ?)"
    "  ORDER BY available_at, created_at LIMIT ?)"
    " RETURNING id, payload, trace_id, attempts"
)
COMPLETE = (
    "UPDATE jobs SET state = 'done', last_error = NULL, lease_owner = NULL,"
    " lease_expires_at = NULL, updated_at = ?"
    " WHERE state = 'leased' AND lease_owner = ? AND id IN ({marks}) RETURNING id"
)


async def poller(path: Path, n: int) -> float:
    """Jobs per second: N jobs enqueued in batches, run by the `jobs` worker, until all done."""
    async with (
        open_sqlite(f"sqlite:///{path}") as db,
        supervised(
            jobs, settings={"jobs": SETTINGS}, resources=[provide(service.db, db)]
        ) as supervisor,
    ):
        await supervisor.ready.wait()
        await trio.sleep(0.05)  # let the first (empty) claim finish: the poller is idle
        table = JobTable(db)
        began = time.perf_counter()
        for start in range(0, n, BATCH):
            await table.enqueue(
                [{"type": "tick", "number": i} for i in range(start, start + BATCH)]
            )
        while (counts := await table.stats())["done"] < n:
            if counts["failed"]:
                raise RuntimeError(f"jobs failed: {counts}")
            await trio.sleep(0.005)
        return n / (time.perf_counter() - began)


def raw_sqlite(path: Path, n: int, *, grouped_acks: bool) -> float:
    """Jobs per second: the same statements in one thread, no Trio, no poller; each claimed
    group acknowledged in one statement (`grouped_acks`, as the poller does at best), or one
    transaction per job (as the poller did before its group commit)."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("BEGIN IMMEDIATE")
        migrate(connection)
        connection.execute("COMMIT")
        owner = f"bench/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        began = time.perf_counter()
        for start in range(0, n, BATCH):
            now = time.time()
            rows = [
                (
                    uuid.uuid4().hex,
                    json.dumps({"type": "tick", "number": i}, separators=(",", ":")),
                    new_trace_id(),
                    now,
                    now,
                    now,
                )
                for i in range(start, start + BATCH)
            ]
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(INSERT, rows)
            connection.execute("COMMIT")
            while True:
                now = time.time()
                connection.execute("BEGIN IMMEDIATE")
                claimed = connection.execute(
                    CLAIM, (owner, now + 60, now, now, now, CONCURRENCY)
                ).fetchall()
                connection.execute("COMMIT")
                if not claimed:
                    break
                for _job_id, payload, _trace_id, _attempts in claimed:
                    json.loads(payload)  # "process": the handler is a no-op
                ids = [row[0] for row in claimed]
                for group in [ids] if grouped_acks else [[job_id] for job_id in ids]:
                    connection.execute("BEGIN IMMEDIATE")
                    connection.execute(
                        COMPLETE.format(marks=", ".join("?" * len(group))),
                        (time.time(), owner, *group),
                    ).fetchall()
                    connection.execute("COMMIT")
        elapsed = time.perf_counter() - began
        [[done]] = connection.execute("SELECT COUNT(*) FROM jobs WHERE state = 'done'").fetchall()
        if done != n:
            raise RuntimeError(f"raw loop: {done} of {n} jobs done")
        return n / elapsed
    finally:
        connection.close()


def main() -> None:
    args = _common.parse_args(__doc__)
    n, rounds = (2_000, 5) if args.quick else (5_000, 9)
    null = open(os.devnull, "w")  # noqa: SIM115  # lives as long as the process

    def fresh_db(measure: Callable[[Path], float]) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            return measure(Path(tmp) / "jobs.db")

    def candidate(level: str) -> float:
        logs.configure(level=level, log_format="json", stream=null)
        return fresh_db(lambda path: trio.run(poller, path, n))

    medians = _common.alternate(
        rounds,
        {
            "json_logs": lambda: candidate("info"),
            "logs_filtered": lambda: candidate("warning"),
            "raw": lambda: fresh_db(lambda path: raw_sqlite(path, n, grouped_acks=True)),
            "raw_per_job": lambda: fresh_db(lambda path: raw_sqlite(path, n, grouped_acks=False)),
        },
    )
    target = ">= 0.5x (jobs/s, higher is better)"
    for metric, name, baseline in (
        ("jobs_per_s_json_logs", "json_logs", "raw"),
        ("jobs_per_s_logs_off", "logs_filtered", "raw"),
        ("jobs_per_s_json_logs_vs_per_job_acks", "json_logs", "raw_per_job"),
    ):
        _common.emit(BENCH, metric, medians[name], medians[baseline], unit="jobs/s", target=target)


if __name__ == "__main__":
    main()
