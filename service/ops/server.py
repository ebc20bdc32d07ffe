"""The ops HTTP server: hypercorn's Trio server, in the service's own nursery.

Started with `nursery.start`, it reports the address it really bound (port 0 picks a free
one) once it accepts connections, and logs `ops.listening`. An address it cannot bind (the
port taken, a host that is not this machine's) is a `ListenError` naming it, not a traceback
from deep inside hypercorn. It stops by cancellation, with the nursery around it. Hypercorn's
own messages go through the service's log pipeline; its startup banner is left out
(`ops.listening` says it, with the port as a number).
"""

from __future__ import annotations

import logging
from functools import partial
from urllib.parse import urlsplit

import structlog
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.typing import ASGIFramework

from service.exception_groups import sole

log = structlog.get_logger("service.ops")

#: Hypercorn's error log, bridged into ours; the "Running on ..." banner is at INFO.
_hypercorn_log = logging.getLogger("service.ops.hypercorn")
_hypercorn_log.setLevel(logging.WARNING)


class ListenError(Exception):
    """The ops server cannot listen where it was told to."""


async def serve(
    app: ASGIFramework,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on `host:port` until cancelled; `started` with the bound (host, port)."""
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.errorlog = _hypercorn_log
    config.accesslog = None  # probes and scrapes every few seconds would drown the log
    async with trio.open_nursery() as nursery:
        try:
            binds = await nursery.start(partial(hypercorn_serve, app, config, mode="asgi"))
        except BaseExceptionGroup as group:
            error = sole(group)  # each of hypercorn's nurseries wrapped it
            if not isinstance(error, OSError):
                raise
            reason = error.strerror or str(error)
            raise ListenError(f"cannot listen on {host}:{port}: {reason}") from error
        bound = urlsplit(binds[0])  # "http://127.0.0.1:8080"
        host, port = bound.hostname or host, bound.port or port
        log.info("ops.listening", host=host, port=port)
        task_status.started((host, port))
