"""Shared resources: declared with `@resource`, opened once by the runtime for their users.

A worker or job names what it needs (`uses=[db]`); the runtime opens those before the first
of them starts and closes them after the last has stopped, in reverse order.
"""

from service.resources.database import Database, DatabaseError, DatabaseUnavailable
from service.resources.db import DatabaseSettings, db, open_database
from service.resources.resource import (
    REGISTERED,
    Provided,
    Resource,
    ResourceFailed,
    Resources,
    describe_error,
    names_of,
    open_resources,
    provide,
    resource,
)

__all__ = [
    "REGISTERED",
    "Database",
    "DatabaseError",
    "DatabaseSettings",
    "DatabaseUnavailable",
    "Provided",
    "Resource",
    "ResourceFailed",
    "Resources",
    "db",
    "describe_error",
    "names_of",
    "open_database",
    "open_resources",
    "provide",
    "resource",
]
