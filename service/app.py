"""The project's manifest: the one file of `service/` that is the project's, not the template's.

Every process imports it at start-up (the service, the CLI, each replica), before settings are
read. Import every module of the project here, so its workers, resources, job types and metrics
exist in each process (a replica that runs only the job poller must know every job type), and
name what runs when `SERVICE_WORKERS` is not set. A template update never touches this file.
"""

from service.workers import feed, feed_consumer, jobs, ticker  # noqa: F401

#: What runs when SERVICE_WORKERS is not set. Producers come after what they feed, so they
#: start after it and stop before it: the poller outlives the ticker and the consumer, and the
#: demo feed outlives its consumer.
WORKERS = ["jobs", "feed", "ticker", "feed_consumer"]
