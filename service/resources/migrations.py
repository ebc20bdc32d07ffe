"""Versioned schema migrations: numbered SQL files in `schema/`, applied once, in order.

No ORM and no migration framework: the schema is small, the SQL is portable between SQLite
and PostgreSQL, and each migration runs in the same transaction as the record of it, so a
crash halfway leaves the database as it was.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from importlib import resources

from service.resources.database import Connection, DatabaseError

_FILE = re.compile(r"(\d{4})_(\w+)\.sql\Z")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def available() -> list[Migration]:
    """The migrations shipped with the package, in version order."""
    found = []
    for entry in (resources.files("service.resources") / "schema").iterdir():
        match = _FILE.match(entry.name)
        if match:
            sql = entry.read_text(encoding="utf-8")
            found.append(Migration(int(match[1]), match[2], _statements(sql)))
    return sorted(found, key=lambda migration: migration.version)


def _statements(sql: str) -> tuple[str, ...]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return tuple(part.strip() for part in "\n".join(lines).split(";") if part.strip())


def migrate(connection: Connection) -> list[int]:
    """Apply what is missing (inside the caller's transaction); the versions applied."""
    connection.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
    )
    rows = connection.execute("SELECT version FROM schema_migrations").fetchall()
    done = {row[0] for row in rows}
    known = available()
    newest = max((migration.version for migration in known), default=0)
    if done and max(done) > newest:
        raise DatabaseError(
            f"the database schema is at version {max(done)}, newer than this service knows "
            f"({newest}): run a newer release, or restore a matching backup"
        )
    applied = []
    for migration in known:
        if migration.version in done:
            continue
        for statement in migration.statements:
            connection.execute(statement)
        connection.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (migration.version, migration.name, time.time()),
        )
        applied.append(migration.version)
    return applied
