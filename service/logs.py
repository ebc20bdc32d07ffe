"""Structured logging: one pipeline for our events and for every library's stdlib logs.

Our own events go through structlog's fast path straight to the output stream; records from
the stdlib `logging` module (hypercorn, psycopg, ...) are rendered by the same processors, so
an operator sees one format. Both write through one lock, so lines never interleave. The lock
is `Output.lock`, visible to the watchdog's thread (`observability.bounded`), which takes it
when it can within a moment and writes past it when a thread blocked on a full stdout holds it.

Two formats: JSON lines for machines (every line leads with `timestamp`, `level`, `event`),
and the console for people at a terminal: `worker` right after the event, ids cut to 8
characters, colour by level (unless `NO_COLOR` is set, or the output is not a terminal).
"""

from __future__ import annotations

import contextvars
import logging
import math
import os
import random
import re
import sys
import threading
import time
from dataclasses import dataclass, field
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
    # What the format needs done to a line before it is rendered, and its renderer.
    prepare: Processor
    renderer: Processor
    if log_format == "json":
        # No locals in tracebacks: they are where passwords and tokens end up.
        prepare = structlog.processors.ExceptionRenderer(
            ExceptionDictTransformer(show_locals=False, use_rich=False)
        )
        renderer = structlog.processors.JSONRenderer()
    else:
        prepare = _for_people
        renderer = _console_renderer(colors=out.isatty() and not os.environ.get("NO_COLOR"))
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.processors.StackInfoRenderer(),
    ]
    global _output  # noqa: PLW0603  # one output per process, as structlog's configuration
    _output = Output(out)
    writer = LineWriter(_output)
    structlog.configure(
        processors=[*shared, prepare, _lead_with_essentials, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=lambda *_: writer,
    )
    handler = _WriteLoggerHandler(writer)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                prepare,
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


def _console_renderer(*, colors: bool) -> structlog.dev.ConsoleRenderer:
    """structlog's console renderer, with `worker=` right after the event (the first thing a
    person looks for), keys otherwise in a stable order, and tracebacks as Python prints them:
    file and line links an editor follows, exception groups as a tree, and never the locals
    (structlog's default, a rich traceback, shows them: that is where secrets are)."""
    renderer = structlog.dev.ConsoleRenderer(
        colors=colors, sort_keys=True, exception_formatter=structlog.dev.plain_traceback
    )
    # The first column renders every key no other column takes, as `key=value`.
    columns = renderer.columns
    at = next(i for i, column in enumerate(columns) if column.key == "event") + 1
    renderer.columns = [
        *columns[:at],
        structlog.dev.Column("worker", columns[0].formatter),
        *columns[at:],
    ]
    return renderer


def _for_people(logger: Any, method: str, event_dict: Any) -> Any:
    # Ids (trace ids, job ids: 32 hex digits) shortened to their first 8, which tell them
    # apart on a screen; the JSON lines keep them whole, for searching. The console renderer
    # formats exceptions itself.
    for key, value in event_dict.items():
        if isinstance(value, str) and _LONG_ID.fullmatch(value):
            event_dict[key] = value[:_SHORT_ID]
    return event_dict


_LONG_ID = re.compile(r"[0-9a-f]{32}")
_SHORT_ID = 8


@dataclass(frozen=True, slots=True)
class Output:
    """Where log lines go, and the lock each line is written under."""

    stream: TextIO
    lock: threading.Lock = field(default_factory=threading.Lock)


_output = Output(sys.stdout)


def current_output() -> Output:
    """The output `configure` set up (stdout, before it is called)."""
    return _output


class LineWriter:
    """A structlog logger (what `logger_factory` returns) writing whole lines under the
    output's lock, flushed at once: what `structlog.WriteLogger` does, with a lock others
    can see."""

    def __init__(self, output: Output) -> None:
        self._output = output

    def msg(self, message: str) -> None:
        with self._output.lock:
            self._output.stream.write(message + "\n")
            self._output.stream.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


class _WriteLoggerHandler(logging.Handler):
    """A stdlib handler that writes through our line writer, sharing its lock."""

    def __init__(self, writer: LineWriter) -> None:
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
