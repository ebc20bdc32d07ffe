"""Every Prometheus metric of the service, in one registry of its own, served at `/metrics`.

One registry of our own, not prometheus_client's global one: a library that registers its
metrics there at import does not leak into our scrape, and tests read exactly ours. Counters
carry no `_created` series (a timestamp per counter and label set, which doubles the scrape
and which Prometheus does not need to compute rates).

Labels stay low-cardinality: a worker's name, an outcome or a state, never an id, a URL or
an error message. Only the runtime's own metrics are here: the job engine and each worker
module define theirs where they feed them (`service.metrics`).
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
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
