"""Run `python -m service` as a real process, as an operator would, and read its JSON logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Self

import trio

#: The checkout the service runs from (`python -m service` needs it on the path).
ROOT = Path(__file__).resolve().parents[2]


def service_env(pythonpath: Path, **settings: str) -> dict[str, str]:
    """The caller's environment without its SERVICE_* variables, plus `settings`.

    `pythonpath` goes first on PYTHONPATH: put the modules of `module:attr` workers there.
    Logs come as JSON lines: stdout is a pipe, not a terminal. The ops server takes any free
    port (`SERVICE_OPS_PORT=0`; its `ops.listening` line says which), so services started
    side by side never collide on the default.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICE_")}
    env["PYTHONPATH"] = f"{pythonpath}{os.pathsep}{ROOT}"
    env["SERVICE_OPS_PORT"] = "0"
    env.update(settings)
    return env


async def service_command(
    env: dict[str, str], *args: str, patience: float = 20.0
) -> subprocess.CompletedProcess[bytes]:
    """`python -m service <args>` to completion, as an operator runs it (`jobs enqueue ...`,
    `check-config`): its output captured, its exit code unchecked; at most `patience` s."""
    with trio.fail_after(patience):
        return await trio.run_process(
            [sys.executable, "-m", "service", *args],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


class ServiceProcess:
    """`async with ServiceProcess(env) as service:` starts it; leaving the block kills it."""

    def __init__(self, env: dict[str, str], *args: str, patience: float = 20.0) -> None:
        self._command = [sys.executable, "-m", "service", *args]
        self._patience = patience
        self._env = env
        self.output = LogLines()
        self.lines = self.output.lines
        self.text = self.output.text
        self._process: trio.Process | None = None

    async def __aenter__(self) -> Self:
        self._process = await trio.lowlevel.open_process(
            self._command,
            env=self._env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        process = self.process
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
            assert process.stdout is not None
            await process.stdout.aclose()

    @property
    def process(self) -> trio.Process:
        assert self._process is not None
        return self._process

    def send(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    async def wait_for(self, event: str) -> dict[str, Any]:
        """The next line with this event among those not read yet (a line that arrived with
        earlier output is in `events()`); fail, showing the output, after `patience`."""
        seen = len(self.lines)
        with trio.move_on_after(self._patience):
            while True:
                for line in self.lines[seen:]:
                    if line.get("event") == event:
                        return line
                seen = len(self.lines)
                if not await self._read():
                    break
        raise AssertionError(f"no {event!r} in output:\n" + "\n".join(self.text))

    async def exit_code(self) -> int:
        """Read the rest of the output and wait for the exit, at most `patience` seconds."""
        with trio.fail_after(self._patience):
            while await self._read():
                pass
            return await self.process.wait()

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == event]

    async def _read(self) -> bool:
        assert self.process.stdout is not None
        chunk = await self.process.stdout.receive_some()
        if not chunk:
            return False
        self.output.feed(bytes(chunk))
        return True


class LogLines:
    """A process's output as it arrives: each line as text, and parsed where it is JSON."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.text: list[str] = []
        self._buffer = b""

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\n")
        for raw in complete:
            if not raw:
                continue  # the blank line a watchdog report starts with (observability.bounded)
            text = raw.decode("utf-8", "replace")
            self.text.append(text)
            try:
                self.lines.append(json.loads(text))
            except json.JSONDecodeError:
                self.lines.append({"raw": text})
