"""Every Prometheus metric of the service, in one registry of its own, served at `/metrics`.

One registry of our own, not prometheus_client's global one: a library that registers its
metrics there at import does not leak into our scrape, and tests read exactly ours. Counters
carry no `_created` series (a timestamp per counter and label set, which doubles the scrape
and which Prometheus does not need to compute rates).

Labels stay low-cardinality: a worker's name, an outcome or a state, never an id, a URL or
an error message. Metrics fed by the built-in workers (ticker, jobs, feed) are defined here
too, so a scrape always lists them with HELP and TYPE, even before the first sample.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream

REGISTRY = CollectorRegistry(auto_describe=True)

# Standard process metrics (CPU seconds, resident memory, open and maximum fds, start time):
# dashboards and alerts know these names.
ProcessCollector(registry=REGISTRY)

# --- The event loop and its tasks (fed by the sampler and the stall watchdog) ---

TASKS_LIVE = Gauge(
    "service_tasks_live", "Trio tasks alive, as of the last sample.", registry=REGISTRY
)
TASKS_RUNNABLE = Gauge(
    "service_tasks_runnable",
    "Trio tasks ready to run and waiting for the loop, as of the last sample.",
    registry=REGISTRY,
)
TASKS_SPAWNED = Counter(
    "service_tasks_spawned", "Trio tasks spawned since the service started.", registry=REGISTRY
)
TASKS_EXITED = Counter(
    "service_tasks_exited", "Trio tasks exited since the service started.", registry=REGISTRY
)
EVENT_LOOP_LAG = Gauge(
    "service_event_loop_lag_seconds",
    "How late the sampler's last timer fired: time the loop spent on other work.",
    registry=REGISTRY,
)
EVENT_LOOP_STALLS = Counter(
    "service_event_loop_stalls",
    "Times the event loop did not answer the stall watchdog within its threshold.",
    registry=REGISTRY,
)
THREADS = Gauge("service_threads", "Python threads alive in the process.", registry=REGISTRY)
THREADS_BUSY = Gauge(
    "service_threads_busy",
    "trio.to_thread calls running under the default thread limiter.",
    registry=REGISTRY,
)

# --- Workers and the service's lifecycle (fed by the supervisor) ---

WORKER_RESTARTS = Counter(
    "service_worker_restarts",
    "Restarts of a worker by its supervisor.",
    ["worker"],
    registry=REGISTRY,
)
WORKER_EXITS = Counter(
    "service_worker_exits",
    "Runs of a worker that ended, by outcome (completed, crashed, stopped, cancelled).",
    ["worker", "outcome"],
    registry=REGISTRY,
)
SHUTDOWN_DURATION = Gauge(
    "service_shutdown_duration_seconds",
    "Seconds since the soft stop began (0 while the service runs).",
    registry=REGISTRY,
)

# --- Fed by the built-in workers ---

TICKER_LATENESS = Histogram(
    "service_ticker_lateness_seconds",
    "How late each tick fired after its deadline.",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
    registry=REGISTRY,
)
JOBS = Counter(
    "service_jobs",
    "Jobs finished, by outcome (done, failed, retried).",
    ["outcome"],
    registry=REGISTRY,
)
JOBS_QUEUED = Gauge(
    "service_jobs_queued",
    "Jobs in the job table, by state (pending, leased).",
    ["state"],
    registry=REGISTRY,
)
FEED_CONNECTED = Gauge(
    "service_feed_connected", "1 while the feed consumer is connected, else 0.", registry=REGISTRY
)
FEED_MESSAGES = Counter(
    "service_feed_messages", "Messages the feed consumer received.", registry=REGISTRY
)
FEED_BAD_MESSAGES = Counter(
    "service_feed_bad_messages",
    "Messages the feed consumer rejected as malformed.",
    registry=REGISTRY,
)
