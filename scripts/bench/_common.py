"""What every benchmark shares: arguments, result lines, alternating rounds, child processes.

Importing this module puts the repository root on `sys.path`, so a benchmark run as
`.venv/bin/python scripts/bench/<name>.py` can `import service` (import it before `service`).
The machine is noisy: every benchmark alternates candidate and baseline over several rounds,
rotating which goes first, and reports medians, so drift hits both sides alike.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from service.testing.process import service_env  # noqa: E402  # needs ROOT on the path

__all__ = ["service_env"]


def parse_args(
    doc: str | None, more: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    """`--quick`, and whatever options `more` adds."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller sizes (<30 s)")
    if more is not None:
        more(parser)
    return parser.parse_args()


def emit(
    bench: str, metric: str, value: float, baseline: float, *, unit: str, target: str
) -> dict[str, Any]:
    """Print one result line (CONTRACTS.md section 7); `ratio` is value / baseline."""
    line = {
        "bench": bench,
        "metric": metric,
        "value": round(value, 3),
        "baseline": round(baseline, 3),
        "ratio": round(value / baseline, 3) if baseline else None,
        "unit": unit,
        "target": target,
    }
    print(json.dumps(line), flush=True)
    return line


def alternate(
    rounds: int, contenders: dict[str, Callable[[], float]], *, warmup: int = 1
) -> dict[str, float]:
    """Run each contender once per round, rotating the order; the median of each, by name.

    The first `warmup` rounds are run and discarded (cold caches, first imports, .pyc files).
    """
    names = list(contenders)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for number in range(warmup + rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            value = contenders[name]()
            if number >= warmup:
                samples[name].append(value)
    return {name: statistics.median(values) for name, values in samples.items()}


def rss_bytes() -> int:
    """This process's resident set size, after a full garbage collection."""
    gc.collect()
    with open("/proc/self/statm", encoding="ascii") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def run_child(script: str, *args: str) -> dict[str, Any]:
    """Run `script` in a fresh interpreter; its last stdout line is its JSON result."""
    done = subprocess.run(
        [sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def write_module(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")


def is_service_ready(line: str) -> bool:
    try:
        return bool(json.loads(line).get("event") == "service.ready")
    except (json.JSONDecodeError, AttributeError):
        return False


def spawn_until(
    command: list[str], env: dict[str, str], ready: Callable[[str], bool]
) -> tuple[subprocess.Popen[str], float]:
    """Start `command`; return it and the seconds from spawn until it printed a `ready` line."""
    began = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen = []
    while line := process.stdout.readline():
        if ready(line):
            return process, time.perf_counter() - began
        seen.append(line)
    process.wait()
    raise RuntimeError(f"{command} exited ({process.returncode}) before ready:\n{''.join(seen)}")


def stop(process: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM) -> float:
    """Send `sig`; the seconds until the process has exited (its output drained meanwhile)."""
    began = time.perf_counter()
    process.send_signal(sig)
    process.communicate(timeout=60)
    elapsed = time.perf_counter() - began
    if process.returncode != 0:
        raise RuntimeError(f"{process.args!r} exited with {process.returncode} after {sig.name}")
    return elapsed


def start_websocket_server(
    directory: Path, name: str, source: str, *args: object
) -> tuple[subprocess.Popen[str], str]:
    """Run `source` (a server script that prints its port, then serves) as a child process;
    the process and its ws:// URL, once it listens."""
    script = directory / f"{name}.py"
    script.write_text(textwrap.dedent(source), encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, str(script), *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    port = process.stdout.readline().strip()
    if not port:
        process.wait()
        raise RuntimeError(f"{name} exited ({process.returncode}) before listening")
    return process, f"ws://127.0.0.1:{port}/events"


def alternate_against_server(
    rounds: int, runs: dict[str, Callable[[str], tuple[float, float]]], server: str, *args: object
) -> tuple[dict[str, float], dict[str, float]]:
    """Each run (url -> (per wall second, per CPU second)) against one process of `server`,
    in alternating rounds: the medians of both rates, by name (warm-up round left out)."""
    cpu: dict[str, list[float]] = {name: [] for name in runs}

    def timed(name: str, url: str) -> float:
        wall_rate, cpu_rate = runs[name](url)
        cpu[name].append(cpu_rate)
        return wall_rate

    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_websocket_server(Path(tmp), "server", server, *args)
        try:
            wall = alternate(rounds, {name: partial(timed, name, url) for name in runs}, warmup=1)
        finally:
            process.terminate()
            process.communicate(timeout=10)
    # The warm-up round is in `cpu` too: drop it, as `alternate` did for the wall clock.
    return wall, {name: statistics.median(values[1:]) for name, values in cpu.items()}
