"""Jobs: durable units of work, declared with `@job`, run by the poller, delivered at least once.

The engine: the job table (`table`), job types and their registry (`job`), the poller that
claims and runs them (`poller`), and the operators' commands (`commands`).
"""

from service.jobs.job import REGISTERED, JobContext, JobType, job
from service.jobs.poller import JobsSettings, job_poller
from service.jobs.table import JOB_STATES, Job, JobState, JobTable, MalformedPayload

__all__ = [
    "JOB_STATES",
    "REGISTERED",
    "Job",
    "JobContext",
    "JobState",
    "JobTable",
    "JobType",
    "JobsSettings",
    "MalformedPayload",
    "job",
    "job_poller",
]
