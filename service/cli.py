"""The command line: `python -m service [run | check-config | jobs ...]`."""

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
from service.exit_codes import EXIT_USAGE
from service.jobs import commands as job_commands
from service.jobs.admin import UnknownJobs
from service.resources import DatabaseError


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
    jobs = commands.add_parser("jobs", help="the job table, for operators")
    job_commands.add_parsers(jobs, lambda command: _add_config_option(command, argparse.SUPPRESS))
    args = parser.parse_args(argv)
    if args.command == "jobs":
        job_commands.check(parser, args)

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
        try:
            print(json.dumps(trio.run(job_commands.run, config, args)))
        except (DatabaseError, UnknownJobs) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        return 0

    from service import runtime  # noqa: PLC0415  # only the run needs it

    logs.configure(level=config.settings.log_level, log_format=config.settings.log_format)
    return runtime.run(config)


def _add_config_option(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=default,
        metavar="FILE",
        help="TOML settings file (or $SERVICE_CONFIG)",
    )
