from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import structlog

from service import jobs, logs, resources

pytest_plugins = ["service.testing.plugin", "pytester", "tests.postgres_fixtures"]


class Events:
    """Log events captured live, with context variables merged in as the real pipeline does."""

    def __init__(self, entries: list[MutableMapping[str, Any]]) -> None:
        self.entries = entries

    def named(self, event: str, **fields: Any) -> list[MutableMapping[str, Any]]:
        return [
            entry
            for entry in self.entries
            if entry["event"] == event and all(entry.get(k) == v for k, v in fields.items())
        ]

    def sequence(self, *names: str) -> list[tuple[str, str | None]]:
        """(event, worker) pairs of the given events, in order."""
        return [
            (entry["event"], entry.get("worker"))
            for entry in self.entries
            if entry["event"] in names
        ]


@pytest.fixture
def events() -> Iterator[Events]:
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as entries:
        yield Events(entries)


@pytest.fixture
def declarations() -> Iterator[None]:
    """For tests that declare resources or job types: forget them afterwards."""
    saved_resources, saved_jobs = dict(resources.REGISTERED), dict(jobs.REGISTERED)
    yield
    resources.REGISTERED.clear()
    resources.REGISTERED.update(saved_resources)
    jobs.REGISTERED.clear()
    jobs.REGISTERED.update(saved_jobs)


@pytest.fixture
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """For tests that call `service.logs.configure`: put structlog, stdlib logging and the
    log output (which the watchdog's bounded writer reads) back."""
    monkeypatch.setattr(logs, "_output", logs.current_output())
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
