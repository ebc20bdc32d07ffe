"""docs/operations.md lists every log event and every metric the code has, and nothing else.

The lists are read from the code, not kept by hand: every call of a logger method (`log.info`,
`ctx.log.warning`, ...) whose first argument is an event name, every `RateLimitedLog(log,
"event", ...)`, and every metric a module defines (`Gauge("name", ...)`,
`metrics.counter("name", ...)`, ...). A renamed or new event fails here until the reference
says so; an event listed that no code emits any more fails too.

What is read is the template's own code: `service/` less the project's files (its manifest
`service/app.py`, and its modules in `service/workers/` other than the examples), and the
reloader. Events and metrics of the example modules must be listed inside the page's
examples blocks, the others outside them: a project generated without the examples loses
those blocks with the modules, and this test holds there as it does here.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPERATIONS = ROOT / "docs" / "operations.md"

#: The example modules that emit events or define metrics (cookiecutter.json `_examples`
#: lists them with the rest of the examples' files; checked below where it exists).
EXAMPLE_MODULES = frozenset(
    {
        "service/workers/feed.py",
        "service/workers/feed_consumer.py",
        "service/workers/jobs.py",
        "service/workers/ticker.py",
    }
)
#: The template's code beyond `service/` that logs events of its own.
OTHER_SOURCES = ("scripts/reload.py",)

#: The markers around the examples' parts of a page (spelled from parts: a generated project
#: must hold no marker, and this file is shipped).
_MARKER = "<!-- {}examples -->"
EXAMPLES_BEGIN, EXAMPLES_END = _MARKER.format(""), _MARKER.format("/")

_EVENT = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")
_LOG_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical"})
_COUNTERS = frozenset({"Counter", "counter", "CounterMetricFamily"})
_METRICS = _COUNTERS | {
    "Gauge",
    "gauge",
    "GaugeMetricFamily",
    "Histogram",
    "histogram",
    "HistogramMetricFamily",
    "Summary",
    "SummaryMetricFamily",
}


def template_sources(root: Path) -> list[str]:
    """The template's own modules that exist here, relative to `root`."""
    found = [
        str(path.relative_to(root))
        for path in sorted((root / "service").rglob("*.py"))
        if "__pycache__" not in path.parts
    ]

    def the_templates(relative: str) -> bool:
        if relative == "service/app.py":
            return False
        if relative.startswith("service/workers/"):
            return relative in EXAMPLE_MODULES or relative == "service/workers/__init__.py"
        return True

    kept = [relative for relative in found if the_templates(relative)]
    return kept + [relative for relative in OTHER_SOURCES if (root / relative).is_file()]


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    if isinstance(call.func, ast.Name):
        return call.func.id
    return None


def _string(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def events_in(source: str) -> set[str]:
    """The log events a module emits (docstrings and comments are not code: not counted)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        called = _called_name(node)
        event = None
        if called in _LOG_METHODS and isinstance(node.func, ast.Attribute) and node.args:
            event = _string(node.args[0])
        elif called == "RateLimitedLog":
            given = node.args[1] if len(node.args) > 1 else None
            keyword = next((k.value for k in node.keywords if k.arg == "event"), None)
            event = _string(given or keyword)
        if event is not None and _EVENT.fullmatch(event):
            found.add(event)
    return found


def metrics_in(source: str) -> set[str]:
    """The metric families a module defines, as a scrape names them (counters end `_total`)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and (called := _called_name(node)) in _METRICS:
            name = _string(node.args[0]) if node.args else None
            if name is None:
                continue
            if called in _COUNTERS and not name.endswith("_total"):
                name += "_total"
            found.add(name)
    return found


def emitted_by(root: Path) -> dict[str, dict[str, set[str]]]:
    """{"events": {event: modules}, "metrics": {metric: modules}} for the template's code."""
    found: dict[str, dict[str, set[str]]] = {"events": {}, "metrics": {}}
    for relative in template_sources(root):
        source = (root / relative).read_text(encoding="utf-8")
        for kind, names in (("events", events_in(source)), ("metrics", metrics_in(source))):
            for name in names:
                found[kind].setdefault(name, set()).add(relative)
    return found


@dataclass(frozen=True, slots=True)
class Listed:
    """The names a section of the page lists: each with whether it is in an examples block."""

    names: dict[str, bool]
    #: Whether the section has examples blocks at all (a generated project has none left).
    marked: bool


def listed_in(markdown: str, heading: str) -> Listed:
    """The backticked names in the first cell of every table row of the `## heading` section
    (up to the next `## `); names with a `*` (`process_*`, a family of families) are left out.
    """
    names: dict[str, bool] = {}
    marked = in_examples = inside = False
    for line in markdown.splitlines():
        if line.startswith("## "):
            inside = line[3:].strip() == heading
            continue
        if not inside:
            continue
        if line.strip() == EXAMPLES_BEGIN:
            marked = in_examples = True
        elif line.strip() == EXAMPLES_END:
            in_examples = False
        elif line.startswith("| `"):
            first_cell = line.split("|")[1]
            for name in re.findall(r"`([^`]+)`", first_cell):
                if "*" not in name:
                    names[name] = in_examples
    return Listed(names, marked)


def reference_problems(
    emitted: Mapping[str, set[str]], listed: Listed, *, what: str, examples: Iterable[str]
) -> list[str]:
    """Every way the page and the code disagree, one line each."""
    example_modules = set(examples)
    problems = [
        f"{what} `{name}` ({', '.join(sorted(modules))}) is not listed in docs/operations.md"
        for name, modules in sorted(emitted.items())
        if name not in listed.names
    ]
    problems += [
        f"docs/operations.md lists {what} `{name}`, which no code has"
        for name in sorted(listed.names)
        if name not in emitted
    ]
    if listed.marked:
        for name, in_examples in sorted(listed.names.items()):
            if name not in emitted:
                continue
            only_examples = emitted[name] <= example_modules
            if only_examples and not in_examples:
                problems.append(
                    f"{what} `{name}` comes from the examples only: list it between "
                    f"{EXAMPLES_BEGIN} and {EXAMPLES_END}"
                )
            elif in_examples and not only_examples:
                problems.append(
                    f"{what} `{name}` is listed among the examples' but the core has it too"
                )
    return problems


def check(kind: str, heading: str, what: str) -> list[str]:
    markdown = OPERATIONS.read_text(encoding="utf-8")
    emitted = emitted_by(ROOT)[kind]
    listed = listed_in(markdown, heading)
    problems = reference_problems(emitted, listed, what=what, examples=EXAMPLE_MODULES)
    cookiecutter = ROOT / "cookiecutter.json"
    if cookiecutter.exists():  # the template's root: the markers are there, the list is right
        shipped = json.loads(cookiecutter.read_text(encoding="utf-8"))["_examples"]
        examples_in_service = {path for path in shipped if path.startswith("service/")}
        assert examples_in_service == EXAMPLE_MODULES, "update EXAMPLE_MODULES"
        assert listed.marked, f"the {heading} section has no examples block"
    return problems


def test_docs_log_events_complete() -> None:
    assert check("events", "Log events", "event") == []


def test_docs_metrics_complete() -> None:
    assert check("metrics", "Metrics", "metric") == []


def test_docs_reference_reads_events_and_metrics_from_code_not_from_docstrings() -> None:
    source = '''
"""A docstring that says log.info("not.an.event") and Gauge("not_a_metric", "")."""
import structlog
from prometheus_client import Counter
from service import RateLimitedLog, metrics

log = structlog.get_logger()
SENT = metrics.counter("alerts_sent_total", "Alerts sent.")
SEEN = Counter("service_seen", "Seen.")
DEPTH = metrics.gauge("service_depth", "Depth.", labels=["queue"])

def f(ctx, parser) -> None:
    log.info("alert.sent", city="Oslo")
    ctx.log.warning(
        "alert.slow",
        seconds=3,
    )
    quiet = RateLimitedLog(ctx.log, "alert.flood", period=10)
    parser.error("alert: give a city")  # not an event name: argparse's
    log.info(f"alert.{1}")  # not a literal: not counted
'''
    assert events_in(source) == {"alert.sent", "alert.slow", "alert.flood"}
    assert metrics_in(source) == {"alerts_sent_total", "service_seen_total", "service_depth"}


def test_docs_reference_catches_a_missing_an_extra_and_a_misplaced_event() -> None:
    page = f"""
## Log events

| event | fields |
|---|---|
| `service.ready`, `service.starting` | `workers` |
| `feed.connected` | `url` |
| `gone.event` | |
{EXAMPLES_BEGIN}
| `tick` | `job_id` |
| `job.done` | `job_id` |
{EXAMPLES_END}

## Metrics

| `not.an.event` | |
"""
    emitted = {
        "service.ready": {"service/supervision/supervisor.py"},
        "service.starting": {"service/runtime/service.py"},
        "worker.started": {"service/supervision/runner.py"},
        "feed.connected": {"service/workers/feed_consumer.py"},
        "tick": {"service/workers/ticker.py"},
        "job.done": {"service/jobs/poller.py"},
    }
    listed = listed_in(page, "Log events")
    assert listed.names == {
        "service.ready": False,
        "service.starting": False,
        "feed.connected": False,
        "gone.event": False,
        "tick": True,
        "job.done": True,
    }
    assert reference_problems(emitted, listed, what="event", examples=EXAMPLE_MODULES) == [
        "event `worker.started` (service/supervision/runner.py) is not listed in "
        "docs/operations.md",
        "docs/operations.md lists event `gone.event`, which no code has",
        "event `feed.connected` comes from the examples only: list it between "
        f"{EXAMPLES_BEGIN} and {EXAMPLES_END}",
        "event `job.done` is listed among the examples' but the core has it too",
    ]
    # A project generated without the examples: neither the modules nor the blocks are left.
    without = {
        name: modules for name, modules in emitted.items() if name not in ("feed.connected", "tick")
    }
    stripped = "\n".join(
        line
        for line in page.replace("| `feed.connected` | `url` |\n", "").splitlines()
        if line
        not in (EXAMPLES_BEGIN, "| `tick` | `job_id` |", "| `job.done` | `job_id` |", EXAMPLES_END)
    )
    listed = listed_in(stripped, "Log events")
    assert not listed.marked
    assert reference_problems(without, listed, what="event", examples=EXAMPLE_MODULES) == [
        "event `job.done` (service/jobs/poller.py) is not listed in docs/operations.md",
        "event `worker.started` (service/supervision/runner.py) is not listed in "
        "docs/operations.md",
        "docs/operations.md lists event `gone.event`, which no code has",
    ]


def test_docs_reference_leaves_the_projects_own_modules_out(tmp_path: Path) -> None:
    """A project's manifest and its own workers log what they like: not the page's business."""
    for relative, text in {
        "service/app.py": 'log.info("app.event")\n',
        "service/workers/__init__.py": "",
        "service/workers/alerts.py": 'ctx.log.info("alert.sent")\n',
        "service/workers/ticker.py": 'ctx.log.info("tick")\n',
        "service/runtime/service.py": 'log.info("service.starting")\n',
    }.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert emitted_by(tmp_path)["events"] == {
        "tick": {"service/workers/ticker.py"},
        "service.starting": {"service/runtime/service.py"},
    }
