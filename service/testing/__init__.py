"""Test tools for services built on this template: leak checks, harnesses in and out of process.

`service.testing.plugin` applies the leak checks to every test of a suite; the pieces are
here for tests that want to check a region of their own.
"""

from service.resources import Provided, provide
from service.testing.database import ClockHoldingDatabase, memory_database, virtual_wall_clock
from service.testing.harness import supervised
from service.testing.http import HttpResponse, http_exchange, http_get
from service.testing.inprocess import RunningService, running_service
from service.testing.leaks import ProcessSnapshot, UnraisableCollector, leaked_tasks, open_fds
from service.testing.process import ServiceProcess, service_command, service_env

__all__ = [
    "ClockHoldingDatabase",
    "HttpResponse",
    "ProcessSnapshot",
    "Provided",
    "RunningService",
    "ServiceProcess",
    "UnraisableCollector",
    "http_exchange",
    "http_get",
    "leaked_tasks",
    "memory_database",
    "open_fds",
    "provide",
    "running_service",
    "service_command",
    "service_env",
    "supervised",
    "virtual_wall_clock",
]
