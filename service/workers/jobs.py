"""The job poller: runs every job type of this process (`@job`), durably, at least once.

Its settings are `SERVICE_JOBS__*` (concurrency, lease, poll interval, default attempts and
timeout). Job types are declared next to what defers them (`tick` in the ticker, `order` in
the feed consumer); `service/app.py` imports their modules so every process knows them. To
give a kind of job its own concurrency, run a second poller: `emails = job_poller(name=...)`.
"""

from service import job_poller

jobs = job_poller(name="jobs", grace=10.0)
