"""Structured logging: one pipeline for our events and for every library's stdlib logs.

Our own events go through structlog's fast path straight to the output stream; records from
the stdlib `logging` module (hypercorn, psycopg, ...) are rendered by the same processors, so
an operator sees one format. Both write through one lock, so lines never interleave.
"""

from __future__ import annotations

import contextvars
import logging
import math
import random
import sys
import time
from typing import Any, ClassVar, Literal, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import Processor

LogFormat = Literal["json", "console"]

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def configure(
    *, level: str = "info", log_format: LogFormat | None = None, stream: TextIO | None = None
) -> None:
    """Set up structlog and bridge stdlib logging; `log_format=None` picks console on a TTY."""
    out = stream or sys.stdout
    if log_format is None:
        log_format = "console" if out.isatty() else "json"
    renderer: Processor
    exceptions: Processor
    if log_format == "json":
        # No locals in tracebacks: they are where passwords and tokens end up.
        exceptions = structlog.processors.ExceptionRenderer(
            ExceptionDictTransformer(show_locals=False, use_rich=False)
        )
        renderer = structlog.processors.JSONRenderer()
    else:
        exceptions = _pass_through
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.processors.StackInfoRenderer(),
    ]
    writer = structlog.WriteLogger(out)
    structlog.configure(
        processors=[*shared, exceptions, _lead_with_essentials, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=lambda *_: writer,
    )
    handler = _WriteLoggerHandler(writer)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                exceptions,
                _lead_with_essentials,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])


def _lead_with_essentials(logger: Any, method: str, event_dict: Any) -> Any:
    # Every line starts `timestamp, level, event`, so a person scanning raw JSON finds them.
    lead = {key: event_dict.pop(key) for key in _ESSENTIALS if key in event_dict}
    return lead | event_dict


_ESSENTIALS = ("timestamp", "level", "event")


def _pass_through(logger: Any, method: str, event_dict: Any) -> Any:
    # The console renderer formats exceptions itself, as a readable traceback.
    return event_dict


class _WriteLoggerHandler(logging.Handler):
    """A stdlib handler that writes through structlog's logger, sharing its lock."""

    def __init__(self, writer: structlog.WriteLogger) -> None:
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._writer.msg(self.format(record))
        except Exception:  # noqa: BLE001  # logging must never take the service down
            self.handleError(record)


class RateLimitedLog:
    """At most one line per `period` seconds for a noisy event; later lines say how many were
    suppressed in between, so the count is never lost."""

    def __init__(self, log: Any, event: str, *, period: float, clock: Any = time.monotonic) -> None:
        self._log = log
        self._event = event
        self._period = period
        self._clock = clock
        self._next = -math.inf
        self._suppressed = 0

    def warning(self, **fields: Any) -> None:
        now = self._clock()
        if now < self._next:
            self._suppressed += 1
            return
        self._log.warning(self._event, suppressed=self._suppressed, **fields)
        self._suppressed = 0
        self._next = now + self._period


def new_trace_id() -> str:
    """A W3C-style 128-bit trace id, as 32 hex digits.

    Random, not secret: ids only need to be unique, so no system call per id (and bytes to
    hex, a third of the cost of formatting the integer).
    """
    return random.getrandbits(128).to_bytes(16).hex()


def unit_of_work(trace_id: str | None = None) -> UnitOfWork:
    """Bind a `trace_id` to every log line of one unit of work (a job, a message, a request):
    `with unit_of_work() as trace_id: ...`.

    The binding lives in a context variable, so it follows the work into child tasks and
    `trio.to_thread`, and is undone when the block ends. A task spawned from inside the block
    into a longer-lived nursery keeps a copy: start such tasks outside the block.
    """
    return UnitOfWork(trace_id or new_trace_id())


class UnitOfWork:
    """The context manager of `unit_of_work`. A class, not a generator: this runs once per
    message or job, and a generator-based one costs as much again as the binding itself."""

    __slots__ = ("_token", "trace_id")

    #: structlog's ContextVar behind `trace_id` (it keeps one per key for the life of the
    #: process), from the token of the first binding: setting it directly is structlog's own
    #: binding without the per-call keyword dict and key formatting.
    _var: ClassVar[contextvars.ContextVar[Any] | None] = None

    def __init__(self, trace_id: str) -> None:
        self.trace_id = trace_id
        self._token: contextvars.Token[Any] | None = None

    def __enter__(self) -> str:
        # Undone by token: a quarter of the cost of copying and re-binding the whole context.
        var = UnitOfWork._var
        if var is None:
            [self._token] = structlog.contextvars.bind_contextvars(trace_id=self.trace_id).values()
            UnitOfWork._var = self._token.var
        else:
            self._token = var.set(self.trace_id)
        return self.trace_id

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            self._token.var.reset(self._token)
