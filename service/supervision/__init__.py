"""Supervision: restart policy, backoff and intensity, lifecycle events, ordered stop."""

from service.supervision.runner import WorkerStatistics
from service.supervision.supervisor import Supervisor, SupervisorStatistics

__all__ = ["Supervisor", "SupervisorStatistics", "WorkerStatistics"]
