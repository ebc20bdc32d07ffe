"""The job table: enqueue, claim with a lease, acknowledge, retry, dead-letter, release.

Delivery is at least once. A claim takes a lease on each job it returns; a job whose lease
expires (its worker died) is claimed again by whoever polls next. Every change to a leased job
names the lease owner, so a worker that lost its lease cannot complete or fail a job that
someone else now holds.

Several processes may share the table (replicas on PostgreSQL). A claim locks the rows it
picks and skips rows another claim has locked (`FOR UPDATE SKIP LOCKED`), so two claims never
return the same job and never wait for each other; SQLite needs no such clause, as its
writers take turns. An enqueue notifies the `jobs` channel at commit, which wakes idle pollers
in this process and (PostgreSQL) in every other.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import trio

from service.jobs.inserts import INSERT, grouped_inserts
from service.logs import new_trace_id
from service.resources.database import Connection, Database

JobState = Literal["pending", "leased", "done", "failed"]
JOB_STATES: tuple[JobState, ...] = ("pending", "leased", "done", "failed")

#: The notification channel that wakes pollers when jobs are enqueued.
CHANNEL = "jobs"

#: The queue of a job type that names none, and of a job enqueued without one.
DEFAULT_QUEUE = "default"

#: How many jobs one purge transaction deletes at most: short, so nothing waits long on it.
PURGE_BATCH = 1_000

#: Ids bound in one statement: well under every engine's limit on parameters.
_IDS_PER_STATEMENT = 500

#: How a claim's row selection locks what it picks, per dialect.
_CLAIM_LOCKING = {"sqlite": "", "postgresql": " FOR UPDATE SKIP LOCKED"}

#: Taken, if free, by the replica that deletes old jobs; the others skip their turn. SQLite's
#: writers take turns anyway. (Any constant key, the same in every process.)
_PURGE_LOCK = 7_316_411_562
_TRY_PURGE_LOCK = {"sqlite": None, "postgresql": f"SELECT pg_try_advisory_xact_lock({_PURGE_LOCK})"}

#: The finished states, as literals: a partial index serves a query only if the query names
#: its state as the index does, which a bound parameter does not.
_FINISHED: dict[JobState, str] = {"done": "state = 'done'", "failed": "state = 'failed'"}


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed job: `attempt` counts this delivery (1 = the first)."""

    id: str
    payload: Any
    trace_id: str
    attempt: int
    #: When it was enqueued (the database's clock): how long it has waited.
    created_at: float = field(default=0.0, compare=False)


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """What waits: jobs by (type, state), pending and leased only, and how long the oldest
    due job has waited (seconds)."""

    jobs: dict[tuple[str | None, JobState], int]
    oldest_wait: float

    def count(self, state: JobState) -> int:
        return sum(number for (_, of_state), number in self.jobs.items() if of_state == state)


class JobTable:
    """Job operations on a `Database`, timed by the database's clock."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._clock = db.now
        self._claim_locking = _CLAIM_LOCKING[db.dialect]

    def now(self) -> float:
        """The time on the database's clock, which its jobs' times are measured on."""
        return self._clock()

    async def enqueue(
        self,
        payloads: Sequence[Any],
        *,
        trace_id: str | None = None,
        delay: float = 0.0,
        key: str | None = None,
        priority: int = 0,
        queue: str = DEFAULT_QUEUE,
    ) -> list[str]:
        """Add jobs (each payload must be JSON-serializable); their ids, in order.

        Every job gets `trace_id` (or a fresh one), so its processing can be traced back to
        what enqueued it. It is due `delay` seconds from now; among the due jobs of its
        `queue` a higher `priority` is claimed first. With a `key` (one payload only), a job
        with the same key still pending or leased is kept instead, and its id returned.
        """
        if key is not None and len(payloads) != 1:
            raise ValueError("a dedupe key goes with exactly one payload")
        now = self._clock()
        rows = [
            (
                uuid.uuid4().hex,
                _encode(payload),
                trace_id or new_trace_id(),
                now + delay,
                now,
                now,
                priority,
                key,
                type_of(payload),
                queue,
            )
            for payload in payloads
        ]
        if key is None:  # with whatever else is enqueued meanwhile, in one transaction
            await grouped_inserts(self._db, notify=CHANNEL).insert(rows)
            return [row[0] for row in rows]

        def insert_unless_held(connection: Connection) -> list[str]:
            while True:  # twice at most: the holder of the key may finish in between
                if connection.execute(
                    f"{INSERT} ON CONFLICT DO NOTHING RETURNING id", rows[0]
                ).fetchall():
                    return [rows[0][0]]
                holder = connection.execute(
                    "SELECT id FROM jobs WHERE dedupe_key = ? AND state IN ('pending', 'leased')",
                    (key,),
                ).fetchone()
                if holder is not None:
                    return [holder[0]]

        return await self._db.transaction(insert_unless_held, notify=CHANNEL)

    async def claim(
        self, limit: int, *, lease_seconds: float, owner: str, queue: str = DEFAULT_QUEUE
    ) -> list[Job]:
        """Lease up to `limit` jobs of `queue`: those whose lease has expired (their worker
        died) first, then the due ones, the highest priority first, then the oldest."""
        _, claimed = await self.complete_and_claim(
            (), limit, lease_seconds=lease_seconds, owner=owner, queue=queue
        )
        return claimed

    async def complete(self, jobs: Sequence[Job], *, owner: str) -> set[str]:
        """Mark jobs done, in one transaction; the ids done. A job left out had lost its lease
        (it will be, or was, delivered again)."""
        done, _ = await self.complete_and_claim(jobs, 0, lease_seconds=0.0, owner=owner)
        return done

    async def complete_and_claim(
        self,
        jobs: Sequence[Job],
        limit: int,
        *,
        lease_seconds: float,
        owner: str,
        queue: str = DEFAULT_QUEUE,
    ) -> tuple[set[str], list[Job]]:
        """`complete(jobs)` and `claim(limit)` in one transaction: a busy poller records what
        finished and takes the next jobs in one round trip and one commit."""
        now = self._clock()
        ids = [job.id for job in jobs]
        locking = self._claim_locking  # one of the constants above, never input

        def exchange(connection: Connection) -> tuple[set[str], list[Any]]:
            done = _mark_done(connection, ids, owner, now) if ids else set()
            if not limit:
                return done, []
            return done, _lease(
                connection,
                limit=limit,
                queue=queue,
                owner=owner,
                now=now,
                lease_seconds=lease_seconds,
                locking=locking,
            )

        done, rows = await self._db.transaction(exchange)
        return done, [
            Job(id_, _decode(raw), trace_id, attempts, created_at)
            for id_, raw, trace_id, attempts, created_at in rows
        ]

    async def retry(self, job: Job, error: str, *, delay: float, owner: str) -> bool:
        """Back to pending, due in `delay` seconds, with the error kept."""
        return await self._settle(
            job,
            owner,
            "state = 'pending', available_at = ?, last_error = ?",
            (self._clock() + delay, error),
        )

    async def fail(self, job: Job, error: str, *, owner: str) -> bool:
        """Dead-letter: never delivered again; the error says why."""
        return await self._settle(job, owner, "state = 'failed', last_error = ?", (error,))

    async def postpone(self, job: Job, error: str, *, delay: float, owner: str) -> bool:
        """Back to pending, due in `delay` seconds, with the error kept, and this delivery not
        counted as an attempt: it could not be tried here (its type is unknown to this
        process), so it must not use up the attempts of a process that can."""
        return await self._settle(
            job,
            owner,
            "state = 'pending', available_at = ?, last_error = ?, attempts = attempts - 1",
            (self._clock() + delay, error),
        )

    async def release(self, job: Job, *, owner: str) -> bool:
        """Give an unfinished job back, due now, without counting this delivery as an attempt."""
        return await self._settle(
            job,
            owner,
            "state = 'pending', available_at = ?, attempts = attempts - 1",
            (self._clock(),),
        )

    async def _settle(
        self, job: Job, owner: str, assignments: str, parameters: Sequence[Any]
    ) -> bool:
        now = self._clock()  # here, not in the worker thread: the clock may be Trio's

        def update(connection: Connection) -> int:
            # `assignments` is one of the constants above, never input: safe to format in.
            return connection.execute(
                f"UPDATE jobs SET {assignments}, lease_owner = NULL, lease_expires_at = NULL,"
                " updated_at = ? WHERE id = ? AND state = 'leased' AND lease_owner = ?",
                (*parameters, now, job.id, owner),
            ).rowcount

        return await self._db.transaction(update) == 1

    async def stats(self) -> dict[JobState, int]:
        """How many jobs are in each state."""

        def count(connection: Connection) -> list[Any]:
            return connection.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()

        counts = dict.fromkeys(JOB_STATES, 0)
        counts.update(await self._db.transaction(count, read_only=True))
        return counts

    async def depth(self, queue: str = DEFAULT_QUEUE) -> QueueDepth:
        """The pending and leased jobs of `queue` per type, and the oldest due job's wait:
        counted on the queue's index, so the cost does not grow with the finished jobs kept."""
        now = self._clock()

        def count(connection: Connection) -> QueueDepth:
            # Each state on its own partial index. The leased jobs are few (the pollers'
            # slots): counted here, or the planner would group them by scanning by type.
            pending = connection.execute(
                "SELECT job_type, COUNT(*) FROM jobs"
                " WHERE queue = ? AND state = 'pending' GROUP BY job_type",
                (queue,),
            ).fetchall()
            leased = Counter(
                job_type
                for (job_type,) in connection.execute(
                    "SELECT job_type FROM jobs WHERE state = 'leased' AND queue = ?", (queue,)
                ).fetchall()
            )
            [oldest] = connection.execute(
                "SELECT MIN(available_at) FROM jobs"
                " WHERE queue = ? AND state = 'pending' AND available_at <= ?",
                (queue, now),
            ).fetchone()
            return QueueDepth(
                {(job_type, "pending"): number for job_type, number in pending}
                | {(job_type, "leased"): number for job_type, number in leased.items()},
                0.0 if oldest is None else now - oldest,
            )

        return await self._db.transaction(count, read_only=True)

    async def purge_all(self, state: JobState, *, older_than: float) -> int:
        """Delete every `state` job older than `older_than` seconds, a batch per transaction
        so claims and completions get in between; how many. 0 if another process is at it."""
        purged = 0
        while True:
            deleted = await self.purge(state, older_than=older_than, limit=PURGE_BATCH)
            purged += deleted or 0
            if deleted is None or deleted < PURGE_BATCH:  # another process's turn, or all gone
                return purged
            await trio.lowlevel.checkpoint()

    async def purge(self, state: JobState, *, older_than: float, limit: int) -> int | None:
        """Delete up to `limit` jobs in `state` (done or failed) last changed more than
        `older_than` seconds ago; how many. None: another process is purging right now."""
        in_state = _FINISHED.get(state)
        if in_state is None:
            raise ValueError(f"only finished jobs are purged, not {state} ones")
        cutoff = self._clock() - older_than
        try_lock = _TRY_PURGE_LOCK[self._db.dialect]

        def delete(connection: Connection) -> int | None:
            if try_lock is not None and not connection.execute(try_lock).fetchone()[0]:
                return None
            return connection.execute(
                "DELETE FROM jobs WHERE id IN"  # `in_state` is one of the constants above
                f" (SELECT id FROM jobs WHERE {in_state} AND updated_at < ? LIMIT ?)",
                (cutoff, limit),
            ).rowcount

        return await self._db.transaction(delete)

    async def wait_for_enqueue(self) -> None:
        """Until jobs are enqueued: in this process, or (PostgreSQL) in any other. Best effort:
        poll as well."""
        await self._db.wait_for_notification(CHANNEL)


def _lease(
    connection: Connection,
    *,
    limit: int,
    queue: str,
    owner: str,
    now: float,
    lease_seconds: float,
    locking: str,
) -> list[Any]:
    """Claim's statement. Each half reads its own index in order and stops at the limit: its
    cost does not grow with the jobs waiting behind it, nor with the finished ones kept."""
    rows = connection.execute(
        "WITH expired AS (SELECT id FROM jobs"
        "  WHERE state = 'leased' AND lease_expires_at <= ? AND queue = ?"
        f"  LIMIT ?{locking}),"
        " due AS (SELECT id FROM jobs"
        "  WHERE queue = ? AND state = 'pending' AND available_at <= ?"
        "  ORDER BY priority DESC, available_at"
        f"  LIMIT ? - (SELECT COUNT(*) FROM expired){locking})"
        " UPDATE jobs SET state = 'leased', attempts = attempts + 1, lease_owner = ?,"
        " lease_expires_at = ?, updated_at = ?"
        " WHERE id IN (SELECT id FROM expired UNION ALL SELECT id FROM due)"
        " RETURNING id, payload, trace_id, attempts, created_at, priority, available_at",
        (now, queue, limit, queue, now, limit, owner, now + lease_seconds, now),
    ).fetchall()
    # RETURNING comes in no particular order: put the claim back in the order it chose.
    return [row[:5] for row in sorted(rows, key=lambda r: (-r[5], r[6]))]


def _mark_done(connection: Connection, ids: Sequence[str], owner: str, now: float) -> set[str]:
    """Complete's statements: the ids marked done (the others had lost their lease)."""
    done: set[str] = set()
    for start in range(0, len(ids), _IDS_PER_STATEMENT):
        chunk = ids[start : start + _IDS_PER_STATEMENT]
        marks = ", ".join("?" * len(chunk))
        rows = connection.execute(
            "UPDATE jobs SET state = 'done', last_error = NULL, lease_owner = NULL,"
            " lease_expires_at = NULL, updated_at = ?"  # `marks` is only "?, ?, ..."
            f" WHERE state = 'leased' AND lease_owner = ? AND id IN ({marks})"
            " RETURNING id",
            (now, owner, *chunk),
        ).fetchall()
        done.update(row[0] for row in rows)
    return done


def type_of(payload: Any) -> str | None:
    """The job type a payload names (`{"type": ...}`), if it names one."""
    kind = payload.get("type") if isinstance(payload, dict) else None
    return kind if isinstance(kind, str) else None


class MalformedPayload(ValueError):
    """A payload that is not JSON, or cannot be made JSON."""


def _encode(payload: Any) -> str:
    try:
        return json.dumps(payload, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise MalformedPayload(f"payload is not JSON-serializable: {exc}") from None


def _decode(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        # Returned, not raised: the poller dead-letters the job with this reason, and the row
        # keeps the stored text for an operator to read.
        return MalformedPayload(f"stored payload is not valid JSON: {exc}")
