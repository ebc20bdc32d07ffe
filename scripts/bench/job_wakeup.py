"""Enqueue-to-start latency across replicas on PostgreSQL: LISTEN/NOTIFY vs polling alone.

Candidate: two "replicas" of one throwaway PostgreSQL database (`service.testing.postgres`),
each its own `open_postgres` (its own pool, its own listener): one runs the `jobs` poller
under the real supervisor at its default `poll_interval` (1 s), the other enqueues jobs, one
every 50 ms, never waiting for them. The poller can learn of a job only from the server: the
in-process wake-up belongs to the other replica. Each latency runs from just before
`JobTable.enqueue` to the moment the job's handler starts (a job type registered for the run
in the job registry, recording `time.perf_counter()`). The NOTIFY sent in the
enqueue's transaction reaches the poller's listener at commit, which wakes it to claim. Both
replicas share one process and event loop (and one clock); the JSON log pipeline writes to
/dev/null.

Baseline: the same with the poller's database opened `listen=False` (what
`SERVICE_DB__LISTEN=false` does): it finds jobs only by polling, so a job waits for the next
poll. With one job every 50 ms the poller keeps finding jobs, so it polls 10 ms after each
turn that found one, growing 1.15x per empty turn: most jobs wait a few tens of ms, and one
that comes after the polls have spread out waits longer (the p99).

Metrics: p50 and p99, medians over rounds. Target: p50 <= 20 ms with NOTIFY.
"""

from __future__ import annotations

import os
import statistics
import time
from functools import partial

import _common
import trio
from pydantic import BaseModel

import service
from service import logs
from service.jobs import REGISTERED, JobContext, JobsSettings, JobTable, JobType
from service.resources.postgres import open_postgres
from service.testing import provide, supervised
from service.testing.postgres import throwaway_cluster
from service.workers.jobs import jobs


class Sequence(BaseModel):
    seq: int


BENCH = "job_wakeup"
JOB_TYPE = "bench_wakeup"
PACE = 0.050
SETTINGS = JobsSettings()  # the defaults: poll_interval 1 s


async def latencies(url: str, n: int, *, listen: bool) -> list[float]:
    """Seconds from before each enqueue (by one replica) to its start (in the other)."""
    enqueued: dict[int, float] = {}
    started: dict[int, float] = {}
    all_started = trio.Event()

    async def record(payload: Sequence, ctx: JobContext) -> None:
        started[payload.seq] = time.perf_counter()
        if len(started) == n:
            all_started.set()

    REGISTERED[JOB_TYPE] = JobType(JOB_TYPE, record, Sequence)
    try:
        async with (
            open_postgres(url, listen=listen) as consumer,
            open_postgres(url, listen=False) as producer,
            supervised(
                jobs, settings={"jobs": SETTINGS}, resources=[provide(service.db, consumer)]
            ) as sup,
        ):
            await sup.ready.wait()
            await trio.sleep(1.5)  # the listener listens, the first claims are over: idle
            table = JobTable(producer)
            for seq in range(n):
                enqueued[seq] = time.perf_counter()
                await table.enqueue([{"type": JOB_TYPE, "seq": seq}])
                await trio.sleep(PACE)
            with trio.fail_after(10 * SETTINGS.poll_interval):
                await all_started.wait()
    finally:
        del REGISTERED[JOB_TYPE]
    return [started[seq] - enqueued[seq] for seq in range(n)]


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    args = _common.parse_args(__doc__)
    n, rounds = (60, 1) if args.quick else (200, 3)
    logs.configure(log_format="json", stream=open(os.devnull, "w"))  # noqa: SIM115
    results: dict[str, list[tuple[float, float]]] = {"notify": [], "polling": []}
    with throwaway_cluster() as cluster:

        def run(name: str, *, listen: bool) -> float:
            url = cluster.create_database()
            measured = trio.run(partial(latencies, url, n, listen=listen))
            p50, p99 = percentile(measured, 50), percentile(measured, 99)
            results[name].append((p50, p99))
            return p50

        _common.alternate(
            rounds,
            {
                "notify": lambda: run("notify", listen=True),
                "polling": lambda: run("polling", listen=False),
            },
            warmup=0,  # each round is a fresh database, pool and listener
        )
    medians = {
        name: [statistics.median(sample[i] for sample in samples) * 1e3 for i in (0, 1)]
        for name, samples in results.items()
    }
    (p50, p99), (polling_p50, polling_p99) = medians["notify"], medians["polling"]
    _common.emit(BENCH, "enqueue_to_start_p50", p50, polling_p50, unit="ms", target="p50 <= 20 ms")
    _common.emit(
        BENCH,
        "enqueue_to_start_p99",
        p99,
        polling_p99,
        unit="ms",
        target="reported only (the target is on p50)",
    )


if __name__ == "__main__":
    main()
