"""The job table: durable units of work, delivered at least once."""

from service.jobs.table import JOB_STATES, Job, JobState, JobTable, MalformedPayload

__all__ = ["JOB_STATES", "Job", "JobState", "JobTable", "MalformedPayload"]
