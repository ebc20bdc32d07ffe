"""The logging pipeline as an operator sees it: JSON lines on the configured stream."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime
from typing import Any

import pytest
import structlog

from service import logs, unit_of_work

pytestmark = pytest.mark.usefixtures("restore_logging")


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_lead_with_timestamp_level_and_event() -> None:
    out = io.StringIO()
    logs.configure(log_format="json", stream=out)
    structlog.get_logger().bind(worker="ticker").info("tick", job_id=7)
    [line] = lines(out)
    assert list(line)[:3] == ["timestamp", "level", "event"]
    assert line == {**line, "level": "info", "event": "tick", "worker": "ticker", "job_id": 7}
    stamp = datetime.fromisoformat(line["timestamp"])
    assert stamp.utcoffset() is not None
    assert stamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_stdlib_logging_comes_out_in_the_same_format() -> None:
    out = io.StringIO()
    logs.configure(log_format="json", stream=out)
    with unit_of_work("abc123"):
        logging.getLogger("hypercorn.error").warning("port %d busy", 8080)
    [line] = lines(out)
    assert line["event"] == "port 8080 busy"
    assert line["level"] == "warning"
    assert line["logger"] == "hypercorn.error"
    assert line["trace_id"] == "abc123"
    assert "timestamp" in line


def test_level_filters_both_our_events_and_library_records() -> None:
    out = io.StringIO()
    logs.configure(log_format="json", level="warning", stream=out)
    structlog.get_logger().info("quiet")
    logging.getLogger("lib").info("quiet too")
    structlog.get_logger().warning("loud")
    assert [line["event"] for line in lines(out)] == ["loud"]


def log_a_failure_with_a_secret_in_its_locals() -> None:
    def connect() -> None:
        password = "hunter2-secret"  # the value must never reach the log
        raise ConnectionError(f"refused for user {len(password)}")

    try:
        connect()
    except ConnectionError:
        structlog.get_logger().exception("db.failed")


def test_tracebacks_are_structured_and_never_show_locals() -> None:
    out = io.StringIO()
    logs.configure(log_format="json", stream=out)
    log_a_failure_with_a_secret_in_its_locals()
    [line] = lines(out)
    assert "hunter2-secret" not in out.getvalue()
    [trace] = line["exception"]
    assert trace["exc_type"] == "ConnectionError"
    assert trace["frames"][-1]["name"] == "connect"
    assert all("locals" not in frame for frame in trace["frames"])


def test_exception_groups_keep_every_leaf() -> None:
    out = io.StringIO()
    logs.configure(log_format="json", stream=out)
    group = ExceptionGroup("two failed", [ValueError("one"), KeyError("two")])
    structlog.get_logger().error("worker.exited", exc_info=group)
    [trace] = lines(out)[0]["exception"]
    assert trace["is_group"] is True
    # Each leaf is its own chain (cause first); the raised exception ends it.
    assert [chain[-1]["exc_type"] for chain in trace["exceptions"]] == ["ValueError", "KeyError"]


def test_unit_of_work_binds_a_fresh_trace_id_and_unbinds_it_after() -> None:
    out = io.StringIO()
    logs.configure(log_format="json", stream=out)
    log = structlog.get_logger()
    with unit_of_work() as first:
        log.info("in first")
    with unit_of_work() as second:
        log.info("in second")
    log.info("outside")
    assert first != second
    assert len(first) == 32
    assert int(first, 16) >= 0
    traced = [line.get("trace_id") for line in lines(out)]
    assert traced == [first, second, None]


def test_console_format_is_for_people() -> None:
    out = io.StringIO()
    logs.configure(log_format="console", stream=out)
    structlog.get_logger().info("service.ready", workers=["ticker"])
    text = out.getvalue()
    assert "service.ready" in text
    assert "workers=['ticker']" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_format_defaults_to_json_when_not_a_terminal() -> None:
    out = io.StringIO()
    logs.configure(stream=out)
    structlog.get_logger().info("hello")
    assert lines(out)[0]["event"] == "hello"


class Terminal(io.StringIO):
    """An in-memory output that says it is a terminal, as stdout does in a shell."""

    def isatty(self) -> bool:
        return True


LONG_ID = "0123456789abcdef0123456789abcdef"


def test_console_puts_the_worker_right_after_the_event() -> None:
    out = io.StringIO()
    logs.configure(log_format="console", stream=out)
    structlog.get_logger().bind(worker="ticker").info("tick", attempt=2, backlog=0)
    [line] = out.getvalue().splitlines()
    after_event = line.split("tick", 1)[1].split()
    assert after_event == ["worker=ticker", "attempt=2", "backlog=0"]


def test_console_shortens_ids_and_json_keeps_them_whole() -> None:
    out = io.StringIO()
    logs.configure(log_format="console", stream=out)
    with unit_of_work(LONG_ID):
        structlog.get_logger().info("job.done", job_id=LONG_ID[::-1], note="abc123")
    fields = set(out.getvalue().split())
    assert {"trace_id=01234567", f"job_id={LONG_ID[::-1][:8]}"} <= fields
    assert "note=abc123" in fields  # not an id: left alone

    out = io.StringIO()
    logs.configure(log_format="json", stream=out)
    with unit_of_work(LONG_ID):
        structlog.get_logger().info("job.done", job_id=LONG_ID[::-1])
    [line] = lines(out)
    assert (line["trace_id"], line["job_id"]) == (LONG_ID, LONG_ID[::-1])


def test_console_colours_levels_only_on_a_terminal_without_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    terminal = Terminal()
    logs.configure(log_format="console", stream=terminal)
    structlog.get_logger().info("fine")
    structlog.get_logger().error("broken")
    info, error = terminal.getvalue().splitlines()
    red, green = "\x1b[31m", "\x1b[32m"
    assert green in info
    assert red not in info
    assert red in error

    monkeypatch.setenv("NO_COLOR", "1")
    terminal = Terminal()
    logs.configure(log_format="console", stream=terminal)
    structlog.get_logger().error("broken")
    assert "\x1b[" not in terminal.getvalue()

    monkeypatch.delenv("NO_COLOR")
    piped = io.StringIO()
    logs.configure(log_format="console", stream=piped)
    structlog.get_logger().error("broken")
    assert "\x1b[" not in piped.getvalue()


def test_console_tracebacks_are_pythons_own_without_locals() -> None:
    out = io.StringIO()
    logs.configure(log_format="console", stream=out)
    log_a_failure_with_a_secret_in_its_locals()
    text = out.getvalue()
    assert "hunter2-secret" not in text
    assert "Traceback (most recent call last):" in text
    assert f'File "{__file__}"' in text
    assert "in connect" in text
    assert text.rstrip().endswith("ConnectionError: refused for user 14")


def test_console_shows_every_leaf_of_an_exception_group() -> None:
    out = io.StringIO()
    logs.configure(log_format="console", stream=out)
    group = ExceptionGroup("two failed", [ValueError("one"), KeyError("two")])
    structlog.get_logger().error("worker.exited", exc_info=group)
    text = out.getvalue()
    assert "ExceptionGroup: two failed (2 sub-exceptions)" in text
    assert "ValueError: one" in text
    assert "KeyError: 'two'" in text


def test_console_renders_library_records_too() -> None:
    out = io.StringIO()
    logs.configure(log_format="console", stream=out)
    with unit_of_work(LONG_ID):
        logging.getLogger("hypercorn.error").warning("port %d busy", 8080)
    [line] = out.getvalue().splitlines()
    assert "port 8080 busy" in line
    assert "[hypercorn.error]" in line
    assert "trace_id=01234567" in line
