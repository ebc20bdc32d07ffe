"""How long a `/metrics` scrape takes, over real HTTP, against the HTTP round trip alone.

The whole service runs in this process (`service.testing.running_service`): the ops server
on a free loopback port, the sampler, and ten supervised workers, so the worker-state family
has sixty series. Each sample is one `GET /metrics` on a fresh connection, timed from connect
to the last byte, as a Prometheus server on the same host sees it. Baseline: `GET /livez` the
same way, the floor of any request to this server (connection, HTTP parsing, hypercorn).
Target: <= 10 ms.
"""

from __future__ import annotations

import os
import statistics
import time

import _common
import trio

from service import WorkerContext, logs, worker
from service.testing import http_get, running_service
from service.worker import AnyWorkerSpec

BENCH = "metrics_scrape"
WORKERS = 10


def idle_worker(number: int) -> AnyWorkerSpec:
    @worker(name=f"idle_{number}")
    async def idle(ctx: WorkerContext, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await ctx.stopping.wait()

    return idle


async def measure(rounds: int, requests: int) -> dict[str, float]:
    specs = [idle_worker(number) for number in range(WORKERS)]
    async with running_service(*specs) as running:
        await running.service.supervisor.ready.wait()
        await trio.sleep(1.1)  # one sample past the first, as in a service that has run a while

        async def timed(path: str) -> float:
            times = []
            for _ in range(requests):
                began = time.perf_counter()
                response = await http_get(running.address, path)
                times.append((time.perf_counter() - began) * 1e3)
                if response.status != 200:
                    raise RuntimeError(f"{path}: {response.status}")
            return statistics.median(times)

        samples: dict[str, list[float]] = {"metrics": [], "livez": []}
        for number in range(1 + rounds):  # the first round warms up
            order = ["metrics", "livez"] if number % 2 else ["livez", "metrics"]
            for path in order:
                value = await timed(f"/{path}")
                if number:
                    samples[path].append(value)
    return {path: statistics.median(values) for path, values in samples.items()}


def main() -> None:
    args = _common.parse_args(__doc__)
    logs.configure(level="warning", log_format="json", stream=open(os.devnull, "w"))  # noqa: SIM115
    rounds, requests = (3, 20) if args.quick else (11, 50)
    medians = trio.run(measure, rounds, requests)
    _common.emit(
        BENCH, "scrape", medians["metrics"], medians["livez"], unit="ms", target="<= 10 ms"
    )


if __name__ == "__main__":
    main()
