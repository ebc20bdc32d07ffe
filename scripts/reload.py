"""`./scripts/run --reload`: the service, restarted whenever a source file of the project changes.

For development only (watchfiles is a dev dependency, and the image has no `scripts/`). The
reloader runs `python -m service ARGS` as a child and watches the checkout (or the `--watch`
paths) for changes to `*.py` and `*.toml` files, through watchfiles: the operating system's
file events, not a polling loop. Everything that happens arrives as one event on one channel
(a batch of changed files, a signal to the reloader, the child's exit), so the reloader decides
one thing at a time:

- files changed: the child gets the two-phase stop's first step, SIGTERM, and the reloader
  waits for it to exit (the service ends by itself within `SERVICE_SHUTDOWN_TIMEOUT`, its
  forced exit sees to that); then a new child starts. Changes while it stops are folded into
  that restart.
- SIGINT or SIGTERM to the reloader (Ctrl-C): the same stop, then the reloader exits with the
  child's exit code. A second one is passed on as the service's second signal, which cancels
  what is left at once. The child runs in its own process group, so a Ctrl-C at the terminal
  reaches the reloader alone and the service sees exactly one signal per press.
- the child exits by itself (a crash, a settings error): the reloader says so and waits for
  the next change, rather than restarting a broken service in a loop.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Literal

import anyio
import structlog
import trio
import watchfiles

from service import logs

ROOT = Path(__file__).resolve().parents[1]
#: What a change to restarts for: the project's code and its settings files.
SOURCE_SUFFIXES = (".py", ".toml")

log = structlog.get_logger("reload")

Changed = tuple[Literal["changed"], list[str]]
Signalled = tuple[Literal["signal"], signal.Signals]
Exited = tuple[Literal["exited"], trio.Process]
Event = Changed | Signalled | Exited


class SourceFiles(watchfiles.DefaultFilter):
    """`*.py` and `*.toml` files, outside what watchfiles ignores by default (`.venv`, `.git`,
    `__pycache__`, editors' swap files, ...): not the database in `var/`, not logs."""

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        return path.endswith(SOURCE_SUFFIXES) and super().__call__(change, path)


async def reload(command: Sequence[str], paths: Sequence[Path]) -> int:
    """Run `command` until a signal, restarting it on every change under `paths`; the last
    child's exit code."""
    send, events = trio.open_memory_channel[Event](math.inf)
    stop_watching = anyio.Event()  # watchfiles' own way to end its thread between two steps
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch, paths, stop_watching, send)
            nursery.start_soon(_pass_on_signals, signals, send)
            try:
                return await _restart_on_change(command, events, send, nursery)
            finally:
                stop_watching.set()
                nursery.cancel_scope.cancel()


async def _restart_on_change(
    command: Sequence[str],
    events: trio.MemoryReceiveChannel[Event],
    send: trio.MemorySendChannel[Event],
    nursery: trio.Nursery,
) -> int:
    process = await _start(command, send, nursery)
    running, restarting, quitting, stopped = True, False, False, False
    async for event in events:
        match event:
            case ("changed", files):
                log.info("reload.changed", files=files)
                if quitting:
                    continue
                restarting = True
                if running and not stopped:
                    process.send_signal(signal.SIGTERM)
                    stopped = True
                elif not running:
                    process = await _start(command, send, nursery)
                    running, restarting, stopped = True, False, False
            case ("signal", _):
                if not running:
                    break
                if quitting or not stopped:  # a second signal hurries the stop along
                    process.send_signal(signal.SIGTERM)
                quitting = stopped = True
            case ("exited", exited) if exited is process:
                running = False
                if quitting:
                    break
                if restarting:
                    process = await _start(command, send, nursery)
                    running, restarting, stopped = True, False, False
                else:
                    log.warning(
                        "reload.exited", exit_code=process.returncode, waiting_for="a change"
                    )
    return _exit_code(process)


async def _start(
    command: Sequence[str], send: trio.MemorySendChannel[Event], nursery: trio.Nursery
) -> trio.Process:
    # Its own process group: a Ctrl-C at the terminal goes to the reloader only.
    process = await trio.lowlevel.open_process(
        list(command), stdin=subprocess.DEVNULL, process_group=0
    )
    nursery.start_soon(_report_exit, process, send)
    return process


async def _report_exit(process: trio.Process, send: trio.MemorySendChannel[Event]) -> None:
    await process.wait()
    await send.send(("exited", process))


async def _pass_on_signals(
    signals: AsyncIterator[int], send: trio.MemorySendChannel[Event]
) -> None:
    async for number in signals:
        await send.send(("signal", signal.Signals(number)))


async def _watch(
    paths: Sequence[Path], stop: anyio.Event, send: trio.MemorySendChannel[Event]
) -> None:
    # `yield_on_timeout`: the first (empty) batch comes once the watches are in place, the
    # moment a change can no longer be missed; `rust_timeout` (ms) bounds how long after.
    watching = False
    async for changes in watchfiles.awatch(
        *paths, watch_filter=SourceFiles(), stop_event=stop, yield_on_timeout=True, rust_timeout=500
    ):
        if not watching:
            log.info("reload.watching", paths=[str(path) for path in paths])
            watching = True
        if changes:
            await send.send(("changed", sorted({_shown(path) for _, path in changes})))


def _shown(path: str) -> str:
    # Relative to where the reloader runs, where that is shorter.
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _exit_code(process: trio.Process) -> int:
    code = process.returncode
    assert code is not None  # only asked once the process has exited
    return code if code >= 0 else 128 - code  # killed by a signal: as a shell reports it


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./scripts/run --reload",
        description="Run the service, restarting it when a *.py or *.toml file changes.",
    )
    parser.add_argument(
        "--watch",
        type=Path,
        action="append",
        metavar="PATH",
        help="a directory or file to watch (repeatable; default: the checkout)",
    )
    parser.add_argument("args", nargs="*", help="arguments for `python -m service`")
    options = parser.parse_args(argv)
    logs.configure()
    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # reload.changed says it
    command = [sys.executable, "-m", "service", *options.args]
    return trio.run(reload, command, options.watch or [ROOT])


if __name__ == "__main__":
    sys.exit(main())
