"""Supervision: restart policy, backoff and intensity, lifecycle events, ordered stop."""

from service.supervision.supervisor import Supervisor

__all__ = ["Supervisor"]
