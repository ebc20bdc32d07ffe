"""A throwaway PostgreSQL server for tests and benchmarks, from the distribution's binaries.

`throwaway_cluster()` runs `initdb` in a fresh temporary directory, starts the server on
127.0.0.1 with a free port, and stops it (`pg_ctl stop -m fast`) and deletes the directory on
the way out. Nothing outside that directory is touched, so any number of clusters (one per
pytest-xdist worker, one per benchmark) run side by side with each other and with any
server the machine already has.

The superuser has a password (loopback connections use scram-sha-256): the DSNs handed out
carry a secret, so tests can check it never reaches a log line. PostgreSQL refuses to run as
root; as root, the server runs as the `postgres` OS user (the Debian package creates it).
Durability is off (`fsync`, `full_page_writes`, `synchronous_commit`) unless asked for: the
data is thrown away anyway, and the tests should wait on the service, not on the disk.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

#: The superuser of every throwaway cluster, and its password (characters that need quoting
#: in a URL, so the URL handling is exercised too).
SUPERUSER = "postgres"
PASSWORD = "thr0waway-s3cret/p@ss"

#: Where Debian and Ubuntu install the server binaries (they are not on PATH there).
_DEBIAN_BINARIES = Path("/usr/lib/postgresql")
_SERVER_SETTINGS = "-c max_connections=300 -c shared_buffers=32MB"
_NOT_DURABLE = " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing, or the server would not start: the message says why."""


def server_binaries() -> Path:
    """The directory holding `initdb` and `pg_ctl`: on PATH, else the newest Debian version."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    versions = sorted(
        (path.parent for path in _DEBIAN_BINARIES.glob("*/bin/pg_ctl")),
        key=lambda bindir: int(bindir.parent.name) if bindir.parent.name.isdigit() else 0,
    )
    if not versions:
        raise PostgresUnavailable(
            "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under "
            f"{_DEBIAN_BINARIES}/<version>/bin: install the distribution's `postgresql` "
            "package (./scripts/system-deps does)"
        )
    return versions[-1]


class PostgresCluster:
    """A running throwaway server; `url()` names a database on it."""

    def __init__(self, bindir: Path, directory: Path, port: int, *, durable: bool) -> None:
        self.bindir = bindir
        self.directory = directory
        self.port = port
        self.durable = durable
        self._data = directory / "data"
        self._log = directory / "server.log"

    def url(self, database: str = "postgres") -> str:
        """A `postgresql://` URL for `database`, with the superuser's password in it."""
        return (
            f"postgresql://{SUPERUSER}:{quote(PASSWORD, safe='')}@127.0.0.1:{self.port}/{database}"
        )

    def create_database(self) -> str:
        """A fresh, empty database (so tests sharing the server never see each other's rows)."""
        import psycopg  # noqa: PLC0415  # only callers that use a cluster pay for the import

        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")  # a generated identifier
        return self.url(name)

    def start(self) -> None:
        settings = _SERVER_SETTINGS if self.durable else _SERVER_SETTINGS + _NOT_DURABLE
        options = f"-h 127.0.0.1 -p {self.port} -k {self.directory} {settings}"
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self._log), "-o", options)

    def stop(self) -> None:
        """Stop the server at once (`-m fast`: sessions are disconnected, nothing is lost)."""
        self._pg_ctl("stop", "-w", "-m", "fast")

    def _pg_ctl(self, *args: str) -> None:
        done = _run_as_owner([str(self.bindir / "pg_ctl"), "-D", str(self._data), *args])
        if done.returncode != 0:
            log = self._log.read_text(errors="replace") if self._log.exists() else ""
            raise PostgresUnavailable(
                f"pg_ctl {args[0]} failed ({done.returncode}):\n{done.stdout}\n{log[-4000:]}"
            )


@contextmanager
def throwaway_cluster(*, durable: bool = False) -> Iterator[PostgresCluster]:
    """initdb, start on a free loopback port, yield; then stop it and delete its files.

    `durable`: fsync and synchronous commits on, as in production (for benchmarks that
    compare with other systems at equal durability); tests leave them off, for speed.
    """
    bindir = server_binaries()
    directory = Path(tempfile.mkdtemp(prefix="pg-"))
    try:
        _give_to_server_user(directory)
        password_file = directory / "password"
        password_file.write_text(PASSWORD, encoding="utf-8")
        _give_to_server_user(password_file)
        initdb = _run_as_owner(
            [
                str(bindir / "initdb"),
                "-D",
                str(directory / "data"),
                "-U",
                SUPERUSER,
                f"--pwfile={password_file}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        )
        if initdb.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({initdb.returncode}):\n{initdb.stdout}")
        cluster = PostgresCluster(bindir, directory, _free_port(), durable=durable)
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _server_user() -> pwd.struct_passwd | None:
    """The OS user to run the server as: `postgres` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable(
            "running as root, but there is no `postgres` OS user to run the server as"
        ) from None


def _give_to_server_user(path: Path) -> None:
    user = _server_user()
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)


def _run_as_owner(command: list[str]) -> subprocess.CompletedProcess[str]:
    user = _server_user()
    prefix = [] if user is None else ["runuser", "-u", user.pw_name, "--"]
    return subprocess.run(
        [*prefix, *command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        timeout=120,
    )
