"""The queue-depth query and the claim with a million done jobs kept vs with none, on SQLite.

Every poller samples the queue's depth every poll interval, and claims whenever it has free
slots, on every replica. Done jobs are kept for `SERVICE_JOBS__KEEP_DONE_SECONDS` (a week by
default), so the table holds far more finished jobs than live ones; neither the sample nor
the claim may cost more as they pile up.

Candidate: `JobTable.depth()` (a queue's pending and leased jobs per type, and its oldest due
job's wait, counted on the queue's index) on a table of
1,000 pending jobs and 1,000,000 done ones (`--quick`: 100,000). Baseline: the same call on a
table of the 1,000 pending jobs alone. Both are file databases opened with `open_sqlite`
(WAL, `synchronous = NORMAL`, a thread per transaction), measured in alternating rounds, the
median of 200 calls each. A second line shows what the sample cost before, a full
`SELECT state, COUNT(*) ... GROUP BY state` (`JobTable.stats()`, now only for `jobs stats`).

The claim line: `JobTable.claim(10)` followed by one statement giving the 10 jobs back
(their ids, by primary key: the same cost on both tables), on the same two databases.

Target: the depth query, and the claim, with 1,000,000 done rows cost <= 2x the same with
none.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import _common  # noqa: F401  # puts the repository root on sys.path
import trio
from _common import alternate, emit, parse_args

from service.jobs import JobTable
from service.resources import Database
from service.resources.sqlite import open_sqlite

BENCH = "job_depth"
TARGET = "<= 2x with 1,000,000 done rows vs none"
PENDING = 1_000
CALLS = 200


def fill(path: Path, done: int) -> None:
    """Migrate through `open_sqlite`, then insert rows directly (fast, one transaction)."""

    async def migrate() -> None:
        async with open_sqlite(f"sqlite:///{path}"):
            pass

    trio.run(migrate)
    now = time.time()
    rows = (
        (uuid.uuid4().hex, json.dumps({"type": "tick"}), uuid.uuid4().hex, state, now, now, now)
        for state, count in (("pending", PENDING), ("done", done))
        for _ in range(count)
    )
    with sqlite3.connect(path) as connection:
        connection.executemany(
            "INSERT INTO jobs (id, payload, trace_id, state, available_at, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        connection.execute("ANALYZE")


async def depth(db: Database) -> object:
    return await JobTable(db).depth()


async def stats(db: Database) -> object:
    return await JobTable(db).stats()


async def claim_and_give_back(db: Database) -> object:
    claimed = await JobTable(db).claim(10, lease_seconds=30, owner="bench")
    ids = [job.id for job in claimed]
    marks = ", ".join("?" * len(ids))
    return await db.transaction(
        lambda c: (
            c.execute(
                f"UPDATE jobs SET state = 'pending', attempts = 0 WHERE id IN ({marks})", ids
            ).rowcount
        )
    )


def timed(path: Path, query: Callable[[Database], Awaitable[object]]) -> Callable[[], float]:
    """Median seconds per call of `query` on the database at `path`."""

    async def run() -> float:
        async with open_sqlite(f"sqlite:///{path}") as db:
            await query(db)  # warm the connection and the page cache
            samples = []
            for _ in range(CALLS):
                began = time.perf_counter()
                await query(db)
                samples.append(time.perf_counter() - began)
            return statistics.median(samples)

    return lambda: trio.run(run)


def main() -> None:
    args = parse_args(__doc__)
    done = 100_000 if args.quick else 1_000_000
    rounds = 3 if args.quick else 5
    with tempfile.TemporaryDirectory() as folder:
        full, empty = Path(folder) / "full.db", Path(folder) / "empty.db"
        fill(full, done)
        fill(empty, 0)
        medians = alternate(
            rounds,
            {
                "depth_full": timed(full, depth),
                "depth_empty": timed(empty, depth),
                "stats_full": timed(full, stats),
                "claim_full": timed(full, claim_and_give_back),
                "claim_empty": timed(empty, claim_and_give_back),
            },
        )
    emit(
        BENCH,
        f"depth_query_with_{done}_done",
        medians["depth_full"] * 1e3,
        medians["depth_empty"] * 1e3,
        unit="ms",
        target=TARGET,
    )
    emit(
        BENCH,
        f"full_count_with_{done}_done",
        medians["stats_full"] * 1e3,
        medians["depth_empty"] * 1e3,
        unit="ms",
        target="reported only: what the sample cost before",
    )
    emit(
        BENCH,
        f"claim_with_{done}_done",
        medians["claim_full"] * 1e3,
        medians["claim_empty"] * 1e3,
        unit="ms",
        target=TARGET,
    )


if __name__ == "__main__":
    main()
