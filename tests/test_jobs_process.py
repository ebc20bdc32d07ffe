"""The job queue end to end: real processes, real SQLite files, real signals.

Each test runs `python -m service` (and its `jobs` commands) as an operator would, against a
database file in `tmp_path`, and checks the queue's promises from the outside: what the logs
say, what the CLI prints, and what the database file holds once every process has exited.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import trio

from service.testing import ServiceProcess, service_command, service_env

#: Per wait: how long a process may take to say the next thing or to exit.
PATIENCE = 15.0

#: A poller whose "slow" jobs take long enough that some are always in flight at a signal.
SLOW_JOBS = """
    import trio
    from pydantic import BaseModel

    from service import JobContext, job
    from service.workers.jobs import jobs


    class Slow(BaseModel):
        pass


    @job()
    async def slow(payload: Slow, ctx: JobContext) -> None:
        ctx.log.info("slow.begin")
        await trio.sleep(0.3)
        ctx.log.info("slow.end")
"""

SLOW = json.dumps({"type": "slow"})


def db_url(path: Path) -> str:
    assert path.is_absolute()
    return f"sqlite:///{path}"  # an absolute path: sqlite:////abs/path.db


def make_env(tmp_path: Path, db: Path, **settings: str) -> dict[str, str]:
    """The environment for every process of a test: JSON logs, the test's database, no port."""
    return service_env(
        tmp_path,
        SERVICE_DB__URL=db_url(db),
        SERVICE_OPS_PORT="0",
        SERVICE_LOG_FORMAT="json",
        **settings,
    )


def write_slow_jobs(tmp_path: Path) -> str:
    (tmp_path / "slow_jobs.py").write_text(textwrap.dedent(SLOW_JOBS), encoding="utf-8")
    return "slow_jobs:jobs"


async def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    """`python -m service <args>` to completion, its output captured."""
    return await service_command(env, *args, patience=PATIENCE)


async def enqueue(env: dict[str, str], count: int, payload: str) -> None:
    result = await cli(env, "jobs", "enqueue", "--count", str(count), "--payload", payload)
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == {"enqueued": count}


def read_jobs(db: Path) -> dict[str, dict[str, Any]]:
    """Every row of the job table, by id (read only once no process is writing)."""
    with contextlib.closing(sqlite3.connect(db)) as connection:
        connection.row_factory = sqlite3.Row
        rows = connection.execute("SELECT * FROM jobs").fetchall()
    return {row["id"]: dict(row) for row in rows}


async def wait_for_count(service: ServiceProcess, event: str, count: int) -> None:
    while len(service.events(event)) < count:
        await service.wait_for(event)


async def wait_until_done(service: ServiceProcess, ids: set[str]) -> None:
    """Read the log until a `job.done` has been seen for every id in `ids`."""
    while not ids <= {line["job_id"] for line in service.events("job.done")}:
        await service.wait_for("job.done")


class JobStream:
    """Batches of slow jobs enqueued by another process, one after another, until stopped."""

    def __init__(self, env: dict[str, str], batch: int = 10) -> None:
        self.env = env
        self.batch = batch
        self.batches = 0
        self.stopping = False

    @property
    def enqueued(self) -> int:
        return self.batch * self.batches

    async def run(self) -> None:
        while not self.stopping:  # a batch under way is finished, never cut short
            await enqueue(self.env, self.batch, SLOW)
            self.batches += 1


async def signal_mid_stream(
    service: ServiceProcess, stream: JobStream, sig: signal.Signals
) -> None:
    """Once the stream has added to the queue and jobs are being done, send `sig` right after
    a slow job began (it is then in flight: it sleeps far longer than a signal takes)."""
    while not stream.batches or len(service.events("job.done")) < 5:
        await service.wait_for("job.done")
    await service.wait_for("slow.begin")
    service.send(sig)
    stream.stopping = True


def index_of(service: ServiceProcess, event: str) -> int:
    [index] = [i for i, line in enumerate(service.lines) if line.get("event") == event]
    return index


# -- 1. SIGTERM mid-stream, then a restart: exactly once ---------------------------------------


async def run_until_signalled(
    env: dict[str, str], stream: JobStream, sig: signal.Signals
) -> ServiceProcess:
    """Run the service while `stream` adds jobs, send `sig` mid-stream; the exited process."""
    async with ServiceProcess(env, patience=PATIENCE) as service:
        await service.wait_for("service.ready")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.run)  # more jobs while this process works
            await signal_mid_stream(service, stream, sig)
            await service.exit_code()
    return service


async def test_sigterm_mid_stream_then_restart_does_every_job_exactly_once(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobs.db"
    poller = write_slow_jobs(tmp_path)
    env = make_env(
        tmp_path,
        db,
        SERVICE_WORKERS=f"{poller},ticker",
        SERVICE_TICKER__INTERVAL="0.02",
        SERVICE_JOBS__POLL_INTERVAL="0.1",
        SERVICE_JOBS__CONCURRENCY="4",
    )
    stream = JobStream(env)
    with trio.fail_after(50):
        await enqueue(env, 40, SLOW)

        first = await run_until_signalled(env, stream, signal.SIGTERM)
        assert first.process.returncode == 0

        after_first = read_jobs(db)
        # The signal came mid-stream: work was left for the restart, and jobs were in flight.
        assert any(job["state"] == "pending" for job in after_first.values())
        stopping = index_of(first, "service.stopping")
        finished_in_grace = [
            line for line in first.lines[stopping:] if line.get("event") == "job.done"
        ]
        assert finished_in_grace, "no job was in flight at SIGTERM"
        # A soft stop leaves nothing leased: in-flight jobs finished, nothing more was claimed.
        assert {job["state"] for job in after_first.values()} <= {"pending", "done"}
        done_first = {line["job_id"] for line in first.events("job.done")}
        assert done_first == {i for i, job in after_first.items() if job["state"] == "done"}

        # The restart: the poller alone, so the set of jobs stays fixed, until all are done.
        restart_env = {**env, "SERVICE_WORKERS": poller, "SERVICE_JOBS__CONCURRENCY": "20"}
        async with ServiceProcess(restart_env, patience=PATIENCE) as second:
            await second.wait_for("service.ready")
            await wait_until_done(second, set(after_first) - done_first)
            second.send(signal.SIGTERM)
            assert await second.exit_code() == 0

    jobs = read_jobs(db)
    assert set(jobs) == set(after_first)  # nothing was added or lost
    assert {i: job["state"] for i, job in jobs.items()} == dict.fromkeys(jobs, "done")
    done_lines = first.events("job.done") + second.events("job.done")
    done_counts = Counter(line["job_id"] for line in done_lines)
    assert set(done_counts) == set(jobs)
    assert [i for i, n in done_counts.items() if n != 1] == []
    assert len(done_lines) == len(jobs)
    assert all(line["attempt"] == 1 for line in done_lines)  # a soft stop costs no attempt
    slow = sum(json.loads(job["payload"])["type"] == "slow" for job in jobs.values())
    assert slow == 40 + stream.enqueued

    # Each ticker job is traced from its tick to its job.done.
    ticks = {line["job_id"]: line["trace_id"] for line in first.events("tick")}
    assert ticks
    assert set(ticks) <= set(jobs)
    done_traces = {line["job_id"]: line["trace_id"] for line in done_lines}
    assert {job_id: done_traces[job_id] for job_id in ticks} == ticks
    assert all(jobs[job_id]["trace_id"] == trace for job_id, trace in ticks.items())


# -- 2. SIGKILL mid-stream, then a restart: at least once, twice only if in flight ------------


async def test_sigkill_mid_stream_then_restart_redoes_only_the_jobs_in_flight(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobs.db"
    poller = write_slow_jobs(tmp_path)
    # The lease is set when a job is claimed: the killed process must claim with a short one
    # for the restart to reclaim its jobs soon.
    env = make_env(
        tmp_path,
        db,
        SERVICE_WORKERS=f"{poller},ticker",
        SERVICE_TICKER__INTERVAL="0.02",
        SERVICE_JOBS__LEASE_SECONDS="1.5",
        SERVICE_JOBS__JOB_TIMEOUT="1.0",
        SERVICE_JOBS__POLL_INTERVAL="0.1",
        SERVICE_JOBS__CONCURRENCY="4",
    )
    stream = JobStream(env)
    with trio.fail_after(50):
        await enqueue(env, 40, SLOW)

        first = await run_until_signalled(env, stream, signal.SIGKILL)
        assert first.process.returncode == -signal.SIGKILL

        at_kill = read_jobs(db)
        leased_at_kill = {i for i, job in at_kill.items() if job["state"] == "leased"}
        assert leased_at_kill, "no job was in flight at the kill"
        assert any(job["state"] == "pending" for job in at_kill.values())

        restart_env = {**env, "SERVICE_WORKERS": poller, "SERVICE_JOBS__CONCURRENCY": "20"}
        async with ServiceProcess(restart_env, patience=PATIENCE) as second:
            await second.wait_for("service.ready")
            done_before = {
                i for i, job in at_kill.items() if job["state"] == "done"
            }  # committed before the kill
            await wait_until_done(second, set(at_kill) - done_before)
            second.send(signal.SIGTERM)
            assert await second.exit_code() == 0

    jobs = read_jobs(db)
    assert set(jobs) == set(at_kill)
    slow = sum(json.loads(job["payload"])["type"] == "slow" for job in jobs.values())
    assert slow == 40 + stream.enqueued
    assert {i: job["state"] for i, job in jobs.items()} == dict.fromkeys(jobs, "done")
    done_lines = first.events("job.done") + second.events("job.done")
    done_counts = Counter(line["job_id"] for line in done_lines)
    assert set(done_counts) == set(jobs)  # every job done at least once
    assert {i for i, n in done_counts.items() if n > 1} <= leased_at_kill
    # A job the killed process held is delivered again as its second attempt, after the
    # lease expired; one it never held is delivered once.
    second_done = {line["job_id"]: line["attempt"] for line in second.events("job.done")}
    assert {i: second_done.get(i) for i in leased_at_kill} == dict.fromkeys(leased_at_kill, 2)
    assert all(second_done[i] == 1 for i in set(second_done) - leased_at_kill)
    assert all(jobs[i]["attempts"] == 2 for i in leased_at_kill)


# -- 3. The CLI -------------------------------------------------------------------------------


async def test_the_jobs_cli_enqueues_reports_rejects_and_the_poller_dead_letters(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobs.db"
    env = make_env(tmp_path, db, SERVICE_WORKERS="jobs", SERVICE_JOBS__POLL_INTERVAL="0.1")
    with trio.fail_after(40):
        result = await cli(
            env, "jobs", "enqueue", "--count", "3", "--payload", '{"type":"echo","message":"hi"}'
        )
        assert result.returncode == 0, result.stderr.decode()
        assert json.loads(result.stdout) == {"enqueued": 3}

        result = await cli(env, "jobs", "stats")
        assert result.returncode == 0, result.stderr.decode()
        stats = json.loads(result.stdout)
        assert stats == stats | {"pending": 3, "leased": 0, "done": 0, "failed": 0}
        assert stats["types"] == {"echo": {"pending": 3, "leased": 0, "done": 0, "failed": 0}}

        result = await cli(env, "jobs", "enqueue", "--payload", '{"type": echo}')
        assert result.returncode == 2
        assert result.stdout == b""
        stderr = result.stderr.decode()
        assert "--payload" in stderr
        assert "not valid JSON" in stderr
        assert "Traceback" not in stderr

        result = await cli(env, "jobs", "enqueue", "--count", "0")
        assert result.returncode == 2
        assert "--count" in result.stderr.decode()

        await enqueue(env, 1, '{"type":"echo","message":["not","text"]}')
        assert len(read_jobs(db)) == 4  # the rejected commands added nothing

        async with ServiceProcess(env, patience=PATIENCE) as service:
            await service.wait_for("service.ready")
            await wait_for_count(service, "job.done", 3)
            if not service.events("job.failed"):
                await service.wait_for("job.failed")
            service.send(signal.SIGTERM)
            assert await service.exit_code() == 0

        result = await cli(env, "jobs", "stats")
        stats = json.loads(result.stdout)
        assert stats == stats | {"pending": 0, "leased": 0, "done": 3, "failed": 1}
        assert stats["oldest_pending_s"] == 0.0

    assert [line["message"] for line in service.events("job.echo")] == ["hi"] * 3
    [failed] = service.events("job.failed")
    assert failed["error"] == "invalid echo payload: message: Input should be a valid string"
    assert service.events("job.retrying") == []
    [dead] = [job for job in read_jobs(db).values() if job["state"] == "failed"]
    assert dead["id"] == failed["job_id"]
    assert json.loads(dead["payload"]) == {"type": "echo", "message": ["not", "text"]}
    assert dead["last_error"] == failed["error"]
    assert dead["attempts"] == 1  # dead-lettered at once, not retried
    assert dead["lease_owner"] is None


# -- 4. Start-up errors -----------------------------------------------------------------------


async def test_a_corrupt_database_file_exits_2_with_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    garbage = b"this is not a SQLite database\n" * 200
    db.write_bytes(garbage)
    env = make_env(tmp_path, db, SERVICE_WORKERS="jobs,ticker")
    async with ServiceProcess(env, patience=PATIENCE) as service:
        assert await service.exit_code() == 2
    [failed] = service.events("resource.failed")
    assert failed["resource"] == "db"
    assert "file is not a database" in failed["error"]
    assert str(db) in failed["error"]
    assert service.events("service.ready") == []
    assert service.events("worker.started") == []
    assert service.events("worker.restarting") == []
    assert service.events("service.stopped")[-1]["exit_code"] == 2
    assert not any("Traceback" in line for line in service.text)
    assert db.read_bytes() == garbage  # the operator's file is left as it was

    result = await cli(env, "jobs", "stats")
    assert result.returncode == 2
    assert "file is not a database" in result.stderr.decode()


async def test_a_read_only_url_to_a_missing_file_exits_2_with_a_clear_error(
    tmp_path: Path,
) -> None:
    db = tmp_path / "missing.db"
    env = service_env(
        tmp_path,
        SERVICE_DB__URL=f"{db_url(db)}?mode=ro",
        SERVICE_OPS_PORT="0",
        SERVICE_LOG_FORMAT="json",
        SERVICE_WORKERS="jobs",
    )
    async with ServiceProcess(env, patience=PATIENCE) as service:
        assert await service.exit_code() == 2
    [failed] = service.events("resource.failed")
    assert str(db) in failed["error"]
    assert "unable to open database file" in failed["error"]
    assert service.events("service.ready") == []
    assert service.events("worker.restarting") == []
    assert not any("Traceback" in line for line in service.text)
    assert not db.exists()  # read-only means read-only: nothing was created


async def test_a_missing_parent_directory_is_created_on_first_run(tmp_path: Path) -> None:
    db = tmp_path / "state" / "nested" / "jobs.db"
    env = make_env(tmp_path, db, SERVICE_WORKERS="jobs")
    async with ServiceProcess(env, patience=PATIENCE) as service:
        await service.wait_for("service.ready")
        service.send(signal.SIGTERM)
        assert await service.exit_code() == 0
    assert service.events("resource.failed") == []
    assert db.is_file()
    assert read_jobs(db) == {}
    result = await cli(env, "jobs", "stats")
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == {
        "pending": 0,
        "leased": 0,
        "done": 0,
        "failed": 0,
        "oldest_pending_s": 0.0,
        "types": {},
    }
