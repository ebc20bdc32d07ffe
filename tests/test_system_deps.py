"""`scripts/system-deps` and `scripts/test` on a fresh machine, simulated.

This machine has everything installed, so each test builds the machine it needs: a PATH of a
few real tools plus fakes (`id` saying who we are, an `apt-get` that records what it was asked
and "installs" by creating the binaries, or none at all), and `SYSTEM_DEPS_POSTGRES_LIB`
pointing at an empty directory where Debian would keep PostgreSQL's server binaries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASH = shutil.which("bash") or "/bin/bash"
#: Real tools the scripts use besides the ones a test fakes.
TOOLS = ("bash", "env", "mktemp", "rm", "cat", "dirname", "touch", "chmod")


class Machine:
    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        self.postgres_lib = root / "usr-lib-postgresql"
        self.postgres_lib.mkdir()
        self.apt_calls = root / "apt-calls"
        for tool in TOOLS:
            found = shutil.which(tool)
            assert found is not None, tool
            (self.bin / tool).symlink_to(found)
        self.uid(0)

    def fake(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(f"#!{BASH}\n{body}\n", encoding="utf-8")
        path.chmod(0o755)

    def uid(self, uid: int) -> None:
        self.fake("id", f"echo {uid}")

    def apt_get(self, *, works: bool = True) -> None:
        """An apt-get that logs its arguments; `install` creates the packages' binaries."""
        installs = (
            f'for p in "$@"; do case "$p" in chromium) touch "{self.bin}/chromium";; '
            f'postgresql) touch "{self.bin}/initdb";; esac; done; '
            f'chmod +x "{self.bin}"/chromium "{self.bin}"/initdb 2>/dev/null; exit 0'
        )
        body = f'echo "$@" >> "{self.apt_calls}"\n'
        body += f'if [ "$1" = install ]; then {installs}; fi\nexit 0' if works else "exit 100"
        self.fake("apt-get", body)

    def run(self, command: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": str(self.bin),
            "SYSTEM_DEPS_POSTGRES_LIB": str(self.postgres_lib),
            "HOME": os.environ.get("HOME", "/tmp"),
            "TMPDIR": str(self.bin.parent),
        }
        return subprocess.run(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def system_deps(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run([BASH, str(ROOT / "scripts" / "system-deps"), *args])

    def apt_log(self) -> list[str]:
        if not self.apt_calls.exists():
            return []
        return self.apt_calls.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_without_apt_it_names_what_to_install_in_one_line_and_exits_2(machine: Machine) -> None:
    result = machine.system_deps("--tests")
    assert result.returncode == 2
    line = one_line(result)
    assert "needs chromium postgresql" in line
    assert "apt-get install chromium postgresql" in line
    assert "valgrind" not in line  # only for the benchmarks


def test_not_root_without_sudo_it_names_what_to_install_and_exits_2(machine: Machine) -> None:
    machine.uid(1000)
    machine.apt_get()
    result = machine.system_deps("--tests")
    assert result.returncode == 2
    assert "needs root" in one_line(result)
    assert machine.apt_log() == []


def test_not_root_with_a_sudo_that_wants_a_password_and_no_terminal_exits_2(
    machine: Machine,
) -> None:
    machine.uid(1000)
    machine.apt_get()
    machine.fake("sudo", 'for a in "$@"; do [ "$a" = -n ] && exit 1; done; exec "$@"')
    result = machine.system_deps("--tests")
    assert result.returncode == 2
    assert "sudo needs a password" in one_line(result)
    assert machine.apt_log() == []


def test_as_root_with_apt_it_installs_what_is_missing(machine: Machine) -> None:
    machine.apt_get()
    result = machine.system_deps("--tests")
    assert result.returncode == 0, result.stderr
    assert machine.apt_log() == ["update -qq", "install -y -qq chromium postgresql"]
    assert machine.system_deps("--tests").returncode == 0  # idempotent
    assert len(machine.apt_log()) == 2  # and quiet: nothing more to install


def test_what_is_installed_is_not_installed_again(machine: Machine) -> None:
    machine.apt_get()
    machine.fake("chromium", "exit 0")
    (machine.postgres_lib / "15" / "bin").mkdir(parents=True)
    machine.fake("valgrind", "exit 0")
    (machine.postgres_lib / "15" / "bin" / "initdb").touch()
    assert machine.system_deps().returncode == 0
    assert machine.apt_log() == []


def test_an_install_that_fails_exits_2_naming_the_packages(machine: Machine) -> None:
    machine.apt_get(works=False)
    result = machine.system_deps("--tests")
    assert result.returncode == 2
    *_, last = result.stderr.splitlines()
    assert "needs chromium postgresql, and apt-get could not install them" in last


def test_scripts_test_stops_before_any_test_with_one_line_and_exit_2(
    machine: Machine, tmp_path: Path
) -> None:
    """The README's command on a machine it cannot equip (a copy of the scripts: as the
    template ships them to every generated project)."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "scripts", project / "scripts", symlinks=True)
    result = machine.run([BASH, str(project / "scripts" / "test")], cwd=project)
    assert result.returncode == 2
    assert "the test suite needs chromium postgresql" in one_line(result)
    assert not (project / ".venv").exists()  # stopped before even the bootstrap
