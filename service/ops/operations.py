"""Everything an operator reaches in a running service, started and stopped as one piece.

The HTTP server (health, metrics, debug views), the task monitor and the sampler behind its
metrics, and the task tree written to the log on SIGUSR1. The service starts it before its
workers, so `/readyz` answers (503) from the first moment, and cancels it only after the
last worker has stopped, so `/readyz` keeps answering 503 while the workers drain.
"""

from __future__ import annotations

import signal

import structlog
import trio

from service.config import Settings
from service.observability.metrics import REGISTRY
from service.observability.monitor import TaskMonitor
from service.observability.sampler import Sampler
from service.ops.app import OpsApp
from service.ops.server import serve
from service.ops.workers import WorkerStateCollector, task_tree
from service.supervision import Supervisor

log = structlog.get_logger("service.ops")


class Operations:
    """Started with `nursery.start` (it reports where it listens), stopped by cancellation."""

    def __init__(self, settings: Settings, supervisor: Supervisor) -> None:
        token = settings.ops_debug_token
        self._supervisor = supervisor
        self._monitor = TaskMonitor()
        self._sampler = Sampler(self._monitor)
        self._app = OpsApp(
            supervisor,
            self._sampler,
            debug_token=None if token is None else token.get_secret_value(),
        )
        self._host = settings.ops_host
        self._port = settings.ops_port

    async def run(
        self, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled; `started` with the (host, port) the server is listening on."""
        workers = WorkerStateCollector(self._supervisor)
        REGISTRY.register(workers)
        try:
            with self._monitor.installed():
                async with trio.open_nursery() as nursery:
                    await nursery.start(self._sampler.run)
                    await nursery.start(self._dump_tasks_on_sigusr1)
                    task_status.started(
                        await nursery.start(serve, self._app, self._host, self._port)
                    )
        finally:
            REGISTRY.unregister(workers)

    async def _dump_tasks_on_sigusr1(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with trio.open_signal_receiver(signal.SIGUSR1) as signals:
            task_status.started()
            async for _ in signals:
                tree = task_tree(self._supervisor)
                log.info("tasks.dump", tasks=tree.total, tree=tree.lines())
