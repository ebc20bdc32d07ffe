"""The operators' command line (`python -m service jobs ...`), on SQLite and on PostgreSQL.

Each test drives `service.cli.main` as an operator would, against a fresh database of each
engine, and reads the JSON it prints; jobs are put in the states the commands act on through
the job table itself, as a poller would leave them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from service.cli import main
from service.jobs import JobTable
from service.resources import open_database
from service.resources.db import DatabaseSettings

Cli = Callable[..., tuple[int, Any, str]]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def cli(url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    monkeypatch.setenv("SERVICE_DB__URL", url)

    def run(*args: str) -> tuple[int, Any, str]:
        code = main(["jobs", *args])
        out, err = capsys.readouterr()
        return code, json.loads(out) if out else None, err

    return run


def table(url: str, operation: Callable[[JobTable], Any]) -> Any:
    """Run `operation(table)` on the database, as a poller would."""

    async def go() -> Any:
        async with open_database(DatabaseSettings(url=url)) as db:
            return await operation(JobTable(db))

    return trio.run(go)


def seed(url: str) -> dict[str, str]:
    """Two failed jobs (of two types), one leased and one pending: their ids by role."""

    async def operation(jobs: JobTable) -> dict[str, str]:
        [boom] = await jobs.enqueue([{"type": "boom"}], trace_id="trace-boom")
        [bang] = await jobs.enqueue([{"type": "bang"}])
        failing = await jobs.claim(2, lease_seconds=60, owner="poller")
        for job in failing:
            await jobs.fail(job, "it broke", owner="poller")
        [leased] = await jobs.enqueue([{"type": "echo"}])
        await jobs.claim(1, lease_seconds=60, owner="poller")
        [pending] = await jobs.enqueue([{"type": "echo", "message": "hi"}], delay=3600)
        return {"boom": boom, "bang": bang, "leased": leased, "pending": pending}

    ids: dict[str, str] = table(url, operation)
    return ids


def test_list_and_show_read_the_table(cli: Cli, url: str) -> None:
    ids = seed(url)
    code, listed, _ = cli("list")
    assert code == 0
    assert [job["id"] for job in listed] == [
        ids["pending"],
        ids["leased"],
        ids["bang"],
        ids["boom"],
    ]
    code, failed, _ = cli("list", "--state", "failed", "--type", "boom")
    assert [job["id"] for job in failed] == [ids["boom"]]
    assert failed[0]["last_error"] == "it broke"
    assert cli("list", "--limit", "1")[1][0]["id"] == ids["pending"]
    code, shown, _ = cli("show", ids["pending"])
    assert shown["payload"] == {"type": "echo", "message": "hi"}
    assert (shown["state"], shown["type"], shown["queue"]) == ("pending", "echo", "default")
    assert shown["available_at"] > shown["created_at"]  # due in an hour


def test_retry_brings_dead_letters_back_with_their_trace_ids(cli: Cli, url: str) -> None:
    ids = seed(url)
    code, retried, _ = cli("retry", ids["boom"])
    assert (code, retried) == (0, {"retried": [ids["boom"]]})
    code, shown, _ = cli("show", ids["boom"])
    assert (shown["state"], shown["attempts"], shown["trace_id"]) == ("pending", 0, "trace-boom")
    code, retried, _ = cli("retry", "--failed", "--type", "bang")
    assert retried == {"retried": [ids["bang"]]}
    assert cli("retry", "--failed")[1] == {"retried": []}  # none left


def test_an_id_in_the_wrong_state_or_unknown_changes_nothing(cli: Cli, url: str) -> None:
    ids = seed(url)
    code, out, err = cli("retry", ids["boom"], ids["leased"], "nonesuch")
    assert (code, out) == (2, None)
    assert err == f"error: no failed job with id {ids['leased']}, nonesuch\n"
    assert cli("show", ids["boom"])[1]["state"] == "failed"  # not half-applied
    code, out, err = cli("cancel", ids["leased"])
    assert (code, err) == (2, f"error: no pending job with id {ids['leased']}\n")
    code, out, err = cli("show", "nonesuch")
    assert (code, err) == (2, "error: no such job with id nonesuch\n")


def test_cancel_fails_a_pending_job_which_retry_brings_back(cli: Cli, url: str) -> None:
    ids = seed(url)
    assert cli("cancel", ids["pending"])[1] == {"cancelled": [ids["pending"]]}
    shown = cli("show", ids["pending"])[1]
    assert (shown["state"], shown["last_error"]) == ("failed", "cancelled by an operator")
    assert cli("retry", ids["pending"])[1] == {"retried": [ids["pending"]]}


def test_purge_deletes_done_jobs_older_than_the_duration(cli: Cli, url: str) -> None:
    async def two_done(jobs: JobTable) -> None:
        await jobs.enqueue([{"type": "echo"}] * 2)
        await jobs.complete(await jobs.claim(2, lease_seconds=60, owner="p"), owner="p")

    table(url, two_done)
    assert cli("purge", "--done-older-than", "1h")[1] == {"purged": 0}
    assert cli("purge", "--done-older-than", "0s")[1] == {"purged": 2}
    assert cli("stats")[1]["done"] == 0


def test_stats_count_per_type_and_the_oldest_due_jobs_wait(cli: Cli, url: str) -> None:
    ids = seed(url)
    code, stats, _ = cli("stats")
    assert code == 0
    assert {key: stats[key] for key in ("pending", "leased", "done", "failed")} == {
        "pending": 1,
        "leased": 1,
        "done": 0,
        "failed": 2,
    }
    assert stats["types"]["echo"] == {"pending": 1, "leased": 1, "done": 0, "failed": 0}
    assert stats["types"]["boom"]["failed"] == 1
    assert stats["oldest_pending_s"] == 0.0  # the pending one is not due for an hour
    cli("retry", ids["boom"])
    assert cli("stats")[1]["oldest_pending_s"] >= 0.0


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["purge", "--done-older-than", "a week"], "not a duration: 'a week'"),
        (["retry"], "give job ids, or --failed"),
        (["retry", "abc", "--failed"], "give job ids, or --failed"),
        (["retry", "abc", "--type", "x"], "--type goes with --failed"),
        (["list", "--state", "lost"], "invalid choice: 'lost'"),
    ],
)
def test_bad_input_is_a_usage_error_naming_it(
    args: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["jobs", *args])
    assert exit_.value.code == 2
    assert complaint in capsys.readouterr().err
