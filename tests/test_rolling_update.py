"""A rolling update: two releases with different job types share one PostgreSQL job table.

The old release's poller meets jobs of a type only the new release knows. It must not
dead-letter them (they are retried with backoff) until a new replica comes and does them; a
payload that fails the new type's validation is dead-lettered at once, by the replica that
knows the type. Real processes, each with its own manifest (the module `SERVICE_WORKERS`
names), as replicas of two versions would run.
"""

from __future__ import annotations

import json
import signal
import textwrap
from collections.abc import Callable
from pathlib import Path

import psycopg
import trio

import service
from service.jobs import JobTable
from service.resources.postgres import open_postgres
from service.testing import ServiceProcess, service_command, service_env

PATIENCE = 30.0

OLD_RELEASE = """
    from service import job_poller

    jobs = job_poller(name="jobs")
"""

NEW_RELEASE = """
    from pydantic import BaseModel

    from service import JobContext, job, job_poller

    jobs = job_poller(name="jobs")


    class Report(BaseModel):
        region: str


    @job()
    async def report(payload: Report, ctx: JobContext) -> None:
        ctx.log.info("report.sent", region=payload.region)
"""


def release(tmp_path: Path, name: str, source: str, url: str) -> dict[str, str]:
    folder = tmp_path / name
    folder.mkdir()
    (folder / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    env = service_env(
        tmp_path,
        SERVICE_WORKERS=f"{name}:jobs",
        SERVICE_DB__URL=url,
        SERVICE_LOG_FORMAT="json",
        SERVICE_OPS_PORT="0",
        SERVICE_JOBS__POLL_INTERVAL="0.2",
        SERVICE_JOBS__RETRY_INITIAL="0.1",
        SERVICE_JOBS__RETRY_CAP="0.3",
        SERVICE_JOBS__MAX_ATTEMPTS="2",
    )
    env["PYTHONPATH"] = f"{folder}:{env.get('PYTHONPATH', '')}"
    return env


async def enqueue(env: dict[str, str], payload: dict[str, object], count: int = 1) -> None:
    command = ["jobs", "enqueue", "--count", str(count), "--payload", json.dumps(payload)]
    result = await service_command(env, *command, patience=PATIENCE)
    assert result.returncode == 0, result.stderr.decode()


def states(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
    return dict(rows)


async def until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` (the processes' output and the table change outside this loop)."""
    with trio.move_on_after(PATIENCE):
        while True:
            if condition():
                return
            await trio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_the_old_release_retries_a_new_type_until_a_new_replica_does_it(
    tmp_path: Path, pg_url: str
) -> None:
    old = release(tmp_path, "old_release", OLD_RELEASE, pg_url)
    new = release(tmp_path, "new_release", NEW_RELEASE, pg_url)
    exits: dict[str, int] = {}

    async def read(name: str, process: ServiceProcess) -> None:
        exits[name] = await process.exit_code()  # reads its output all along

    async with (
        ServiceProcess(old, patience=2 * PATIENCE) as old_replica,
        trio.open_nursery() as nursery,
    ):
        await old_replica.wait_for("service.ready")
        nursery.start_soon(read, "old", old_replica)
        await enqueue(old, {"type": "report", "region": "north"}, count=5)
        await enqueue(old, {"type": "report"})  # invalid for the new release's model
        await until(lambda: len(old_replica.events("job.unknown_type")) >= 12, "retries")
        assert old_replica.events("job.failed") == []
        left = states(pg_url)  # postponed (or being postponed), never dead-lettered
        assert set(left) <= {"pending", "leased"}
        assert sum(left.values()) == 6

        async with ServiceProcess(new, patience=2 * PATIENCE) as new_replica:
            await new_replica.wait_for("service.ready")
            nursery.start_soon(read, "new", new_replica)
            await until(lambda: states(pg_url) == {"done": 5, "failed": 1}, "the new replica")
            for replica in (new_replica, old_replica):
                replica.send(signal.SIGTERM)
            await until(lambda: len(exits) == 2, "both replicas to exit")
    assert exits == {"old": 0, "new": 0}
    assert old_replica.events("job.failed") == []
    assert old_replica.events("job.done") == []
    # Every job's first try in the new replica: the old one's bounces spent no attempt.
    assert {line["attempt"] for line in new_replica.events("job.done")} == {1}
    assert [line["region"] for line in new_replica.events("report.sent")] == ["north"] * 5
    [failed] = new_replica.events("job.failed")
    assert failed["error"] == "invalid report payload: region: Field required"


async def test_defer_options_hold_on_postgresql(pg_url: str) -> None:
    """Delay, priority and the dedupe key's partial unique index, on the server's SQL."""
    async with open_postgres(pg_url, listen=False) as db:
        table = JobTable(db)
        [first] = await table.enqueue([{"type": "x"}], key="k")
        assert await table.enqueue([{"type": "x"}], key="k") == [first]
        [later] = await table.enqueue([{"type": "x"}], delay=3600)
        [urgent] = await table.enqueue([{"type": "x"}], priority=7)
        claimed = await table.claim(10, lease_seconds=30, owner="a")
        assert [job.id for job in claimed] == [urgent, first]
        assert later not in {job.id for job in claimed}
        assert await table.enqueue([{"type": "x"}], key="k") == [first]  # leased: still held
        await table.complete(claimed, owner="a")
        assert await table.enqueue([{"type": "x"}], key="k") != [first]
    assert service.db.name == "db"
