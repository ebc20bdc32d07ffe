"""The job table for operators: look, retry dead letters, cancel, purge, count.

Each operation is one short transaction, safe on a live system: it never waits for a running
job, and a job a poller holds is never changed under it (only failed jobs are retried, only
pending ones cancelled). An id that does not name a job in the right state changes nothing and
is reported, so a typo never half-applies a command.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.jobs.table import JOB_STATES, JobState
from service.resources.database import Connection, Database

#: What an operator's cancel leaves as the job's error (it stays, failed, and can be retried).
CANCELLED = "cancelled by an operator"

_COLUMNS = (
    "id, job_type, queue, state, attempts, priority, trace_id, created_at, available_at,"
    " updated_at, last_error, payload"
)


class UnknownJobs(LookupError):
    """Ids that name no job in the state the command needs; nothing was changed."""

    def __init__(self, ids: Sequence[str], state: str) -> None:
        self.ids = list(ids)
        super().__init__(f"no {state} job with id {', '.join(self.ids)}")


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One row of the job table, as an operator sees it."""

    id: str
    type: str | None
    queue: str
    state: str
    attempts: int
    priority: int
    trace_id: str
    created_at: float
    available_at: float
    updated_at: float
    last_error: str | None
    payload: str

    def as_json(self, *, with_payload: bool = False) -> dict[str, Any]:
        document: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "queue": self.queue,
            "state": self.state,
            "attempts": self.attempts,
            "priority": self.priority,
            "trace_id": self.trace_id,
            "created_at": _iso(self.created_at),
            "available_at": _iso(self.available_at),
            "updated_at": _iso(self.updated_at),
            "last_error": self.last_error,
        }
        if with_payload:
            try:
                document["payload"] = json.loads(self.payload)
            except json.JSONDecodeError:
                document["payload_text"] = self.payload  # kept as stored: nothing is lost
        return document


class JobAdmin:
    """Operators' commands on a `Database`'s job table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def find(
        self, *, state: JobState | None = None, job_type: str | None = None, limit: int = 100
    ) -> list[JobRecord]:
        """The newest jobs first, of a state and a type if given."""
        where, parameters = _filters(state=state, job_type=job_type)

        def select(connection: Connection) -> list[Any]:
            return connection.execute(
                f"SELECT {_COLUMNS} FROM jobs{where} ORDER BY created_at DESC, id LIMIT ?",
                (*parameters, limit),
            ).fetchall()

        return [JobRecord(*row) for row in await self._db.transaction(select, read_only=True)]

    async def show(self, job_id: str) -> JobRecord:
        def select(connection: Connection) -> Any:
            return connection.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()

        row = await self._db.transaction(select, read_only=True)
        if row is None:
            raise UnknownJobs([job_id], "such")
        return JobRecord(*row)

    async def retry(self, ids: Sequence[str]) -> list[str]:
        """Dead letters back to pending, due now, with their attempts counted afresh (their
        trace ids kept, so the new attempts trace back to what enqueued them)."""
        due = self._db.now()
        return await self._move(
            ids, "failed", "state = 'pending', attempts = 0, available_at = ?", due
        )

    async def retry_failed(self, *, job_type: str | None = None) -> list[str]:
        """Every dead letter (of a type, if given) back to pending."""
        failed = await self._ids(state="failed", job_type=job_type)
        return await self.retry(failed) if failed else []

    async def cancel(self, ids: Sequence[str]) -> list[str]:
        """Pending jobs to failed, never run, with CANCELLED as their error (retry undoes it)."""
        return await self._move(ids, "pending", "state = 'failed', last_error = ?", CANCELLED)

    async def stats(self) -> dict[str, Any]:
        """Jobs per state, overall and per type, and how long the oldest due job has waited."""
        now = self._db.now()

        def count(connection: Connection) -> tuple[list[Any], Any]:
            per_type = connection.execute(
                "SELECT job_type, state, COUNT(*) FROM jobs GROUP BY job_type, state"
            ).fetchall()
            [oldest] = connection.execute(
                "SELECT MIN(available_at) FROM jobs WHERE state = 'pending' AND available_at <= ?",
                (now,),
            ).fetchone()
            return per_type, oldest

        per_type, oldest = await self._db.transaction(count, read_only=True)
        totals: dict[str, int] = dict.fromkeys(JOB_STATES, 0)
        types: dict[str, dict[str, int]] = {}
        for job_type, state, number in per_type:
            totals[state] += number
            types.setdefault(job_type or "?", dict.fromkeys(JOB_STATES, 0))[state] = number
        return {
            **totals,
            "oldest_pending_s": 0.0 if oldest is None else round(now - oldest, 3),
            "types": dict(sorted(types.items())),
        }

    async def _ids(self, *, state: JobState, job_type: str | None) -> list[str]:
        where, parameters = _filters(state=state, job_type=job_type)

        def select(connection: Connection) -> list[Any]:
            return connection.execute(f"SELECT id FROM jobs{where}", parameters).fetchall()

        return [row[0] for row in await self._db.transaction(select)]

    async def _move(
        self, ids: Sequence[str], state: JobState, assignments: str, *values: Any
    ) -> list[str]:
        """Change every job of `ids` in `state`, or none if any is not (UnknownJobs)."""
        wanted = list(dict.fromkeys(ids))
        now = self._db.now()

        def update(connection: Connection) -> list[str]:
            moved: list[str] = []
            for job_id in wanted:
                # `assignments` is one of the constants above, never input.
                rows = connection.execute(
                    f"UPDATE jobs SET {assignments}, updated_at = ?"
                    " WHERE id = ? AND state = ? RETURNING id",
                    (*values, now, job_id, state),
                ).fetchall()
                moved.extend(row[0] for row in rows)
            missing = [job_id for job_id in wanted if job_id not in moved]
            if missing:
                raise UnknownJobs(missing, state)  # rolls the whole command back
            return moved

        return await self._db.transaction(update)


def _filters(*, state: JobState | None, job_type: str | None) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    parameters: list[Any] = []
    if state is not None:
        clauses.append("state = ?")
        parameters.append(state)
    if job_type is not None:
        clauses.append("job_type = ?")
        parameters.append(job_type)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(parameters)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
