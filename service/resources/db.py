"""`db`: the built-in database resource, SQLite by default, PostgreSQL to scale out.

Declared like any project resource, so a worker or job says `uses=[db]` and gets the
`Database` with `ctx.db` (or `ctx.use(db)`). Its settings are `SERVICE_DB__*`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator

from service.redaction import mask_url
from service.resources.database import Database
from service.resources.resource import resource
from service.resources.sqlite import open_sqlite

#: The URL schemes that select PostgreSQL (`SERVICE_DB__URL=postgresql://...`).
POSTGRES_SCHEMES = ("postgresql", "postgres")


class DatabaseSettings(BaseModel):
    """`SERVICE_DB__...`: where the job table and any worker's data live.

    The URL may carry a password: it is shown masked wherever settings are shown
    (`check-config`), and a malformed URL is reported without quoting it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Annotated[str, PlainSerializer(mask_url, when_used="json")] = Field(
        default="sqlite:///var/service.db",
        description="sqlite:///relative.db, sqlite:////absolute.db, sqlite:///:memory:, or "
        "postgresql://user:password@host:port/database?option=value",
    )
    listen: bool = Field(
        default=True,
        description="PostgreSQL: LISTEN/NOTIFY wakes pollers across replicas (polling stays "
        "the fallback); off behind a transaction-pooling proxy, where LISTEN does not work",
    )

    @field_validator("url")
    @classmethod
    def _supported_url(cls, value: str) -> str:
        scheme = value.partition(":")[0]
        if scheme in POSTGRES_SCHEMES:
            # Imported here: the driver costs ~90 ms at start-up, SQLite users never pay it.
            from service.resources.postgres import check_url  # noqa: PLC0415

            check_url(value)
        elif scheme != "sqlite":
            raise ValueError(
                f"unsupported database URL scheme {scheme!r} (supported: sqlite, postgresql)"
            )
        return value


@resource(settings=DatabaseSettings)
async def db(settings: DatabaseSettings) -> AsyncIterator[Database]:
    async with open_database(settings) as database:
        yield database


def open_database(settings: DatabaseSettings) -> AbstractAsyncContextManager[Database]:
    """The database `settings.url` names: PostgreSQL for `postgresql://` (or `postgres://`),
    else SQLite (the scheme was checked when the settings were read)."""
    if settings.url.partition(":")[0] in POSTGRES_SCHEMES:
        # Imported here: the driver costs ~90 ms at start-up, SQLite users never pay it.
        from service.resources.postgres import open_postgres  # noqa: PLC0415

        return open_postgres(settings.url, listen=settings.listen)
    return open_sqlite(settings.url)
