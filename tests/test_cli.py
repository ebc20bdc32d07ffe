"""`python -m service check-config`, run as an operator would: a real process, its exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.testing import service_env

ROOT = Path(__file__).resolve().parents[1]
SECRET = "hunter2-S3CR3T-do-not-print"

WORKERS = """\
import trio
from pydantic import BaseModel, ConfigDict, SecretStr

from service import WorkerContext, worker


class VaultSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = "https://vault.example"
    token: SecretStr = SecretStr("")
    interval: float = 1.0


@worker(settings=VaultSettings)
async def vault(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()


@worker()
async def idle(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
"""


@pytest.fixture
def module_dir(tmp_path: Path) -> Path:
    """A directory for PYTHONPATH holding `demo_workers` (workers) and `broken_workers`."""
    directory = tmp_path / "modules"
    directory.mkdir()
    (directory / "demo_workers.py").write_text(WORKERS, encoding="utf-8")
    (directory / "broken_workers.py").write_text(
        "raise RuntimeError('broken at import time')\n", encoding="utf-8"
    )
    return directory


def run_service(module_dir: Path, *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = service_env(module_dir, **environ)
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def config_errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The problem lines of a failed run, after checking it failed as a config error should."""
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines
    assert all(line.startswith("config error: ") for line in lines), lines
    return [line.removeprefix("config error: ") for line in lines]


def test_check_config_prints_the_effective_settings_as_json(module_dir: Path) -> None:
    result = run_service(
        module_dir,
        "check-config",
        SERVICE_WORKERS="demo_workers:idle, demo_workers:vault",
        SERVICE_LOG_LEVEL="DEBUG",
        SERVICE_LOG_FORMAT="json",
        SERVICE_SHUTDOWN_TIMEOUT="7.5",
        SERVICE_VAULT__INTERVAL="2",
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    document = json.loads(result.stdout)
    expected = {
        "workers": ["idle", "vault"],
        "log_format": "json",
        "log_level": "debug",
        "shutdown_timeout": 7.5,
        "ops_host": "127.0.0.1",
        "ops_port": 0,  # service_env's: any free port
        "ops_debug_token": None,
        "vault": {"url": "https://vault.example", "token": "", "interval": 2.0},
    }
    assert {key: document[key] for key in expected} == expected


def test_check_config_masks_the_ops_debug_token(module_dir: Path) -> None:
    result = run_service(module_dir, "check-config", SERVICE_OPS_DEBUG_TOKEN=SECRET)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ops_debug_token"] == "**********"
    assert SECRET not in result.stdout


def test_check_config_shows_the_defaults(module_dir: Path) -> None:
    result = run_service(module_dir, "check-config")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["log_level"] == "info"
    assert document["log_format"] is None
    assert document["shutdown_timeout"] == 25.0
    assert isinstance(document["workers"], list)


def test_check_config_ignores_the_parents_service_variables(
    module_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVICE_SHUTDOWN_TIMEOUT", "-1")  # would fail if it leaked through
    result = run_service(module_dir, "check-config")
    assert result.returncode == 0, result.stderr


def test_check_config_masks_secrets(module_dir: Path) -> None:
    result = run_service(
        module_dir,
        "check-config",
        SERVICE_WORKERS="demo_workers:vault",
        SERVICE_VAULT__TOKEN=SECRET,
    )
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout
    assert SECRET not in result.stderr
    assert json.loads(result.stdout)["vault"]["token"] == "**********"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"SERVICE_WORKERS": "nosuch"},
            "SERVICE_WORKERS: unknown worker 'nosuch'",
        ),
        (
            {"SERVICE_WORKERS": "demo_workers:vault, demo_workers:"},
            "SERVICE_WORKERS: 'demo_workers:' is not a module:attr reference",
        ),
        (
            {"SERVICE_WORKERS": "demo_workers:nope"},
            "SERVICE_WORKERS: module 'demo_workers' has no attribute 'nope'",
        ),
        (
            {"SERVICE_WORKERS": "broken_workers:vault"},
            "SERVICE_WORKERS: cannot import 'broken_workers' for 'broken_workers:vault': "
            "RuntimeError: broken at import time",
        ),
        (
            {"SERVICE_SHUTDOWN_TIMEOUT": "0"},
            "SERVICE_SHUTDOWN_TIMEOUT: Input should be greater than 0",
        ),
        (
            {"SERVICE_SHUTDOWN_TIMEOUT": "soon"},
            "SERVICE_SHUTDOWN_TIMEOUT: Input should be a valid number",
        ),
        (
            {"SERVICE_NOPE": "1"},
            "SERVICE_NOPE: unknown setting",
        ),
        (
            {"SERVICE_WORKERS": "demo_workers:vault", "SERVICE_VAULT__NOPE": "1"},
            "SERVICE_VAULT__NOPE: unknown setting",
        ),
    ],
)
def test_a_config_problem_is_one_line_and_exit_2(
    module_dir: Path, environ: dict[str, str], expected: str
) -> None:
    [problem] = config_errors(run_service(module_dir, "check-config", **environ))
    assert problem.startswith(expected)


def test_every_problem_gets_its_own_line(module_dir: Path) -> None:
    result = run_service(
        module_dir,
        "check-config",
        SERVICE_WORKERS="demo_workers:vault, nosuch, demo_workers:idle:x",
        SERVICE_VAULT__INTERVAL="soon",
        SERVICE_NOPE="1",
    )
    problems = config_errors(result)
    assert len(problems) == 4
    assert {problem.split(":")[0] for problem in problems} == {
        "SERVICE_WORKERS",
        "SERVICE_VAULT__INTERVAL",
        "SERVICE_NOPE",
    }


def test_config_problems_never_echo_the_value(module_dir: Path) -> None:
    result = run_service(
        module_dir,
        "check-config",
        SERVICE_WORKERS="demo_workers:vault",
        SERVICE_VAULT__INTERVAL=SECRET,
        SERVICE_SHUTDOWN_TIMEOUT=SECRET,
    )
    assert result.returncode == 2
    assert SECRET not in result.stderr
    assert SECRET not in result.stdout


def test_running_with_a_bad_config_is_exit_2_too(module_dir: Path) -> None:
    [problem] = config_errors(run_service(module_dir, SERVICE_NOPE="1"))
    assert problem == "SERVICE_NOPE: unknown setting"


# --- the config file ------------------------------------------------------------------------

FILE = """\
workers = ["demo_workers:vault"]
shutdown_timeout = 12
log_level = "warning"

[vault]
interval = 4
url = "https://from-the-file.example"
"""


@pytest.mark.parametrize("before_the_command", [True, False])
def test_config_option_reads_the_file(
    module_dir: Path, tmp_path: Path, before_the_command: bool
) -> None:
    path = tmp_path / "service.toml"
    path.write_text(FILE, encoding="utf-8")
    option = ["--config", str(path)]
    args = [*option, "check-config"] if before_the_command else ["check-config", *option]
    result = run_service(module_dir, *args)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["workers"] == ["vault"]
    assert document["shutdown_timeout"] == 12.0
    assert document["log_level"] == "warning"
    assert document["vault"]["interval"] == 4.0


def test_config_file_named_by_service_config(module_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "service.toml"
    path.write_text(FILE, encoding="utf-8")
    result = run_service(module_dir, "check-config", SERVICE_CONFIG=str(path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["vault"]["url"] == "https://from-the-file.example"


def test_environment_overrides_the_config_file(module_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "service.toml"
    path.write_text(FILE, encoding="utf-8")
    result = run_service(
        module_dir, "--config", str(path), "check-config", SERVICE_VAULT__INTERVAL="9"
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["vault"]["interval"] == 9.0
    assert document["vault"]["url"] == "https://from-the-file.example"


def test_bad_value_in_the_file_names_the_file_and_key(module_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "service.toml"
    path.write_text(FILE.replace("interval = 4", f'interval = "{SECRET}"'), encoding="utf-8")
    result = run_service(module_dir, "--config", str(path), "check-config")
    [problem] = config_errors(result)
    assert problem.startswith(f"{path}: vault.interval: ")
    assert SECRET not in result.stderr


def test_missing_config_file(module_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    [problem] = config_errors(run_service(module_dir, "--config", str(path), "check-config"))
    assert problem.startswith(f"{path}: cannot read config file")


def test_invalid_toml(module_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "service.toml"
    path.write_text(f"token = {SECRET}\n", encoding="utf-8")
    result = run_service(module_dir, "--config", str(path), "check-config")
    [problem] = config_errors(result)
    assert problem.startswith(f"{path}: not valid TOML")
    assert SECRET not in result.stderr


# --- usage ----------------------------------------------------------------------------------


def test_unknown_command_is_a_usage_error(module_dir: Path) -> None:
    result = run_service(module_dir, "frobnicate")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "frobnicate" in result.stderr
