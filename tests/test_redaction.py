"""Database passwords never shown: masked URLs, scrubbed messages, `check-config`, config errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.redaction import mask_url, redact
from service.testing import service_env
from service.testing.process import ROOT

SECRET = "hunter2-S3CR3T"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            f"postgresql://app:{SECRET}@db.internal:5432/jobs",
            "postgresql://app:***@db.internal:5432/jobs",
        ),
        (
            f"postgres://app:{SECRET}@h1:5432,h2:5433/jobs?sslmode=require",
            "postgres://app:***@h1:5432,h2:5433/jobs?sslmode=require",
        ),
        (
            f"postgresql://app@db/jobs?sslmode=require&password={SECRET}",
            "postgresql://app@db/jobs?sslmode=require&password=***",
        ),
        ("postgresql://p%40ss:w%2Fo@db/jobs", "postgresql://p%40ss:***@db/jobs"),
        ("postgresql://app@db/jobs", "postgresql://app@db/jobs"),
        ("postgresql:///jobs", "postgresql:///jobs"),
        ("sqlite:///var/service.db", "sqlite:///var/service.db"),
    ],
)
def test_urls_show_everything_but_the_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_messages_lose_the_password_as_written_and_decoded() -> None:
    url = "postgresql://app:s%40cret@db/jobs"
    text = 'bad token "s%40cret"; authentication failed for "s@cret"'
    assert redact(text, url) == 'bad token "***"; authentication failed for "***"'
    assert redact("nothing to hide", "postgresql://app@db/jobs") == "nothing to hide"


def check_config(tmp_path: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", "check-config"],
        cwd=ROOT,
        env=service_env(tmp_path, **environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_masks_the_database_password(tmp_path: Path) -> None:
    url = f"postgresql://app:{SECRET}@db.internal:5432/jobs?password={SECRET}"
    result = check_config(tmp_path, SERVICE_DB__URL=url, SERVICE_DB__LISTEN="false")
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert json.loads(result.stdout)["db"] == {
        "url": "postgresql://app:***@db.internal:5432/jobs?password=***",
        "listen": False,
    }


def test_postgres_is_the_other_accepted_scheme(tmp_path: Path) -> None:
    result = check_config(tmp_path, SERVICE_DB__URL=f"postgres://app:{SECRET}@db/jobs")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["db"]["url"] == "postgres://app:***@db/jobs"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"postgresql://app:{SECRET}%zz@db/jobs", "invalid percent-encoded token"),
        (f"postgresql://app:{SECRET}@db/jobs?no_such_option=1", "invalid URI query parameter"),
        (f"mysql://app:{SECRET}@db/jobs", "unsupported database URL scheme 'mysql'"),
    ],
)
def test_a_bad_database_url_is_named_but_never_echoed(
    tmp_path: Path, url: str, problem: str
) -> None:
    result = check_config(tmp_path, SERVICE_DB__URL=url)
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("config error: SERVICE_DB__URL: ")
    assert problem in line
    assert SECRET not in line
