"""SIGTERM-to-exit of the service with one worker holding 10,000 idle child tasks.

Shutdown is the supervisor's other hot path: the signal is routed to the loop, `service.stopping`
is logged, the worker gets its soft stop (it cancels its own nursery, as a well-behaved worker
does), its exit is logged and the process ends. The baseline is a plain Trio program holding
the same tree that cancels it on SIGTERM (`trio.open_signal_receiver`). Both are real
subprocesses, timed from the signal to exit, so interpreter teardown counts on both sides. The
signal goes out a moment after the ready line, once every child task has parked: otherwise
one side could be timed while its children were still taking their first step. Target: <= 1.3x.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import _common

BENCH = "shutdown_latency"

WORKER = """
    import os

    import trio

    from service import WorkerContext, worker


    @worker(grace=30)
    async def holder(ctx: WorkerContext, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(int(os.environ["BENCH_CHILDREN"])):
                nursery.start_soon(trio.sleep_forever)
            task_status.started()
            await ctx.stopping.wait()
            nursery.cancel_scope.cancel(reason="soft stop")
"""

BARE = """
    import os
    import signal

    import trio


    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                for _ in range(int(os.environ["BENCH_CHILDREN"])):
                    nursery.start_soon(trio.sleep_forever)
                print("ready", flush=True)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break


    trio.run(main)
"""


CHILDREN = 10_000
SETTLE_S = 0.3  # after the ready line, for every child task to park


def main() -> None:
    args = _common.parse_args(__doc__)
    rounds = 3 if args.quick else 15
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        _common.write_module(directory, "bench_holder", WORKER)
        _common.write_module(directory, "bench_bare", BARE)
        env = _common.service_env(
            directory, SERVICE_WORKERS="bench_holder:holder", BENCH_CHILDREN=str(CHILDREN)
        )

        def service() -> float:
            command = [sys.executable, "-m", "service"]
            process, _ = _common.spawn_until(command, env, _common.is_service_ready)
            time.sleep(SETTLE_S)
            return _common.stop(process) * 1e3

        def bare() -> float:
            command = [sys.executable, str(directory / "bench_bare.py")]
            process, _ = _common.spawn_until(command, env, lambda line: line.strip() == "ready")
            time.sleep(SETTLE_S)
            return _common.stop(process) * 1e3

        medians = _common.alternate(rounds, {"service": service, "bare": bare})
    _common.emit(
        BENCH, "sigterm_to_exit", medians["service"], medians["bare"], unit="ms", target="<= 1.3x"
    )


if __name__ == "__main__":
    main()
