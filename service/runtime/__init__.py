"""The running service: the one place that knows the whole of it.

It owns the signals and the two-phase shutdown: the first SIGTERM or SIGINT logs
`service.stopping`, makes the service not ready and stops the workers in reverse order, each
with its grace period; a second signal hard-cancels what is left; and if the process has still
not finished `shutdown_timeout` seconds after the first signal, the forced exit ends it.
"""

from service.runtime.service import Service, run

__all__ = ["Service", "run"]
