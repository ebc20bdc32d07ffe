"""The built-in workers. `SERVICE_WORKERS=name` runs `service.workers.<name>:<name>`.

A module here is imported only when its worker is selected, so the default run pays nothing
for the examples it does not use.
"""

#: What runs when SERVICE_WORKERS is not set: the examples. Producers come after what they
#: feed, so they start after it and stop before it: the poller outlives the ticker and the
#: consumer, and the demo feed outlives its consumer.
DEFAULT_WORKERS: tuple[str, ...] = ("jobs", "feed", "ticker", "feed_consumer")
