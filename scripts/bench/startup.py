"""Start-up time of `python -m service` to `service.ready` vs importing its dependencies.

Interpreter start and importing trio, structlog and pydantic are a floor no service on this
stack can go below; everything above it (our modules, config loading and validation, logging
set-up, the supervisor starting one trivial worker) is the template's own cost. Both sides are
fresh subprocesses timed from spawn until they print a line (`service.ready`, or a line after
the imports), so interpreter teardown counts on neither. Target: at most 150 ms above the
baseline: the ratio is reported too, but the target is the difference, so a second line
reports it as its value (with the same baseline, and ratio = difference / baseline).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import _common

BENCH = "startup"

WORKER = """
    import trio

    from service import WorkerContext, worker


    @worker()
    async def trivial(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await ctx.stopping.wait()
"""

# `import pydantic` alone is lazy (about 35 ms of it comes with the first `BaseModel`): import
# what every service needs from it, or the baseline would leave out most of pydantic.
IMPORTS = "import trio, structlog; from pydantic import BaseModel; print('imported', flush=True)"


def main() -> None:
    args = _common.parse_args(__doc__)
    rounds = 5 if args.quick else 21
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        _common.write_module(directory, "bench_trivial", WORKER)
        env = _common.service_env(directory, SERVICE_WORKERS="bench_trivial:trivial")

        def service() -> float:
            command = [sys.executable, "-m", "service"]
            process, elapsed = _common.spawn_until(command, env, _common.is_service_ready)
            _common.stop(process)
            return elapsed * 1e3

        def imports() -> float:
            command = [sys.executable, "-c", IMPORTS]
            process, elapsed = _common.spawn_until(command, env, lambda line: "imported" in line)
            process.wait()
            return elapsed * 1e3

        medians = _common.alternate(rounds, {"service": service, "imports": imports})
    value, baseline = medians["service"], medians["imports"]
    target = "<= 150 ms above baseline"
    _common.emit(BENCH, "spawn_to_ready", value, baseline, unit="ms", target=target)
    # The target's own metric: the difference, against the same measured baseline.
    _common.emit(BENCH, "ready_minus_imports", value - baseline, baseline, unit="ms", target=target)


if __name__ == "__main__":
    main()
