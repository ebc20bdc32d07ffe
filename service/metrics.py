"""A project's own metrics, in the service's registry, served at `/metrics` with the rest.

    SENT = metrics.counter("alerts_sent_total", "Alerts sent.")
    LATENCY = metrics.histogram("alert_seconds", "Time to send an alert.", labels=["channel"])

Define each metric once, at the top of the module that feeds it. These are prometheus_client's
own objects (`inc`, `set`, `observe`, `labels`, `time`); only the registry is ours, so a
library's metrics in prometheus_client's global registry never leak into the scrape. Keep
labels low-cardinality: a kind, an outcome, never an id, a URL or an error message.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram

from service.observability.metrics import REGISTRY

__all__ = ["Counter", "Gauge", "Histogram", "counter", "gauge", "histogram"]


def counter(name: str, documentation: str, *, labels: Sequence[str] = ()) -> Counter:
    """A value that only goes up (events, bytes, errors); `rate()` it in queries."""
    return Counter(name, documentation, labels, registry=REGISTRY)


def gauge(name: str, documentation: str, *, labels: Sequence[str] = ()) -> Gauge:
    """A value that goes up and down (queue depth, connections, temperature)."""
    return Gauge(name, documentation, labels, registry=REGISTRY)


def histogram(
    name: str,
    documentation: str,
    *,
    labels: Sequence[str] = (),
    buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
) -> Histogram:
    """A distribution (latencies, sizes), in `buckets` (upper bounds, in the unit's base)."""
    return Histogram(name, documentation, labels, registry=REGISTRY, buckets=buckets)
