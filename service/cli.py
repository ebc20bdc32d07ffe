"""The command line: `python -m service [run | check-config | jobs enqueue | jobs stats]`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from service import logs, registry
from service.config import ConfigError
from service.resources import DatabaseError

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    _add_config_option(parser, default=None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in [
        ("run", "run the service (the default)"),
        ("check-config", "print the effective settings as JSON and exit"),
    ]:
        # Accept --config after the command too; SUPPRESS keeps an earlier one from being reset.
        _add_config_option(commands.add_parser(name, help=text), default=argparse.SUPPRESS)
    jobs = commands.add_parser("jobs", help="the job table").add_subparsers(
        dest="jobs_command", metavar="JOBS_COMMAND", required=True
    )
    enqueue = jobs.add_parser("enqueue", help="add jobs; prints how many as JSON")
    enqueue.add_argument("--count", type=_positive_int, default=1, metavar="N")
    enqueue.add_argument(
        "--payload", type=_json, default={"type": "echo"}, help='JSON (default {"type": "echo"})'
    )
    _add_config_option(enqueue, default=argparse.SUPPRESS)
    stats = jobs.add_parser("stats", help="print the jobs in each state as JSON")
    _add_config_option(stats, default=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    try:
        config = registry.load(os.environ, args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return EXIT_USAGE

    if args.command == "check-config":
        print(json.dumps(config.as_json(), indent=2))
        return 0

    if args.command == "jobs":
        from service.jobs import commands as job_commands  # noqa: PLC0415

        try:
            if args.jobs_command == "enqueue":
                enqueued = trio.run(job_commands.enqueue, config, args.count, args.payload)
                print(json.dumps(enqueued))
            else:
                print(json.dumps(trio.run(job_commands.stats, config)))
        except DatabaseError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        return 0

    from service import runtime  # noqa: PLC0415  # only the run needs it

    logs.configure(level=config.settings.log_level, log_format=config.settings.log_format)
    return runtime.run(config)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


def _add_config_option(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=default,
        metavar="FILE",
        help="TOML settings file (or $SERVICE_CONFIG)",
    )
