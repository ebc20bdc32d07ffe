"""Concurrent enqueues share a transaction: one commit, and one trip to the database's
thread, for every job enqueued while the previous commit was under way.

A service enqueues from many tasks at once (request handlers, a feed's consumers). Alone,
each insert pays a thread round trip and a commit, both far dearer than its row; grouped,
they share them. Nothing waits to be grouped: the first caller commits at once, whoever
arrives meanwhile joins the next group, committed as soon as the first is done. Each caller
returns once its own rows are committed, or raises what their commit raised.

A caller cancelled before its group is committed may still find its job enqueued, as with
any statement cancelled while it commits: its rows are in the group, which the next member
commits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

import trio

from service.resources.database import Connection, Database, DatabaseError

#: A new job: its id, payload, trace id, due, created and updated times, priority, dedupe
#: key, type and queue.
INSERT = (
    "INSERT INTO jobs (id, payload, trace_id, state, available_at, created_at,"
    " updated_at, priority, dedupe_key, job_type, queue)"
    " VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)"
)

#: One per database, whoever enqueues.
_GROUPS: WeakKeyDictionary[Database, GroupedInserts] = WeakKeyDictionary()


def grouped_inserts(db: Database, *, notify: str) -> GroupedInserts:
    """The group commit of the jobs enqueued into `db`; each commit notifies `notify`."""
    try:
        found = _GROUPS.get(db)
    except TypeError:  # a database that cannot be a key (a fake that is a dataclass): alone
        return GroupedInserts(db, notify)
    if found is None:
        found = _GROUPS[db] = GroupedInserts(db, notify)
    return found


class GroupedInserts:
    """One database's enqueues, committed a group at a time."""

    def __init__(self, db: Database, notify: str) -> None:
        self._db = db
        self._notify = notify
        self._lock = trio.Lock()
        self._open = _Group()

    async def insert(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert `rows` with whatever else is being inserted meanwhile."""
        group = self._open
        group.rows.extend(rows)
        async with self._lock:
            # Unless an earlier member committed it, or failed to. (If its commit was cut
            # short by its cancellation, this member commits the group.)
            if not group.settled:
                if self._open is group:
                    self._open = _Group()
                try:
                    await self._db.transaction(self._insert_all(group.rows), notify=self._notify)
                except DatabaseError as exc:
                    group.settled, group.error = True, exc
                    raise
                group.settled = True
                return
        if group.error is not None:  # each member raises its own copy of the commit's error
            raise type(group.error)(str(group.error)) from group.error

    def _insert_all(self, rows: list[tuple[Any, ...]]) -> Callable[[Connection], None]:
        def insert(connection: Connection) -> None:
            connection.executemany(INSERT, rows)

        return insert


@dataclass(slots=True)
class _Group:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    settled: bool = False  # committed, or failed with `error`
    error: DatabaseError | None = None
