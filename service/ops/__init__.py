"""The operator's surface: health, metrics and debug views over HTTP, the task tree on SIGUSR1."""

from service.ops.operations import Operations

__all__ = ["Operations"]
