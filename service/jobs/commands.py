"""`python -m service jobs ...`: the job table from the command line, for operators.

Every command prints JSON and is one short transaction (a purge: a few), safe on a live
system. Bad input (an unknown id, a bad duration) is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from typing import Any

from service.jobs.admin import JobAdmin
from service.jobs.job import REGISTERED
from service.jobs.table import DEFAULT_QUEUE, JOB_STATES, JobTable, type_of
from service.registry import ServiceConfig
from service.resources import open_database

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)\Z")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def add_parsers(
    jobs: argparse.ArgumentParser, add_config: Callable[[argparse.ArgumentParser], None]
) -> None:
    """The `jobs` subcommands; `add_config` gives each the `--config` option."""
    commands = jobs.add_subparsers(dest="jobs_command", metavar="JOBS_COMMAND", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=text, description=text)
        add_config(parser)
        return parser

    enqueue = command("enqueue", "add jobs; prints how many")
    enqueue.add_argument("--count", type=positive_int, default=1, metavar="N")
    enqueue.add_argument(
        "--payload", type=_json, default={"type": "echo"}, help='JSON (default {"type": "echo"})'
    )
    listing = command("list", "the newest jobs first")
    listing.add_argument("--state", choices=JOB_STATES)
    listing.add_argument("--type", dest="job_type", metavar="TYPE")
    listing.add_argument("--limit", type=positive_int, default=100, metavar="N")
    show = command("show", "one job, with its payload")
    show.add_argument("id")
    retry = command("retry", "dead letters back to pending: these ids, or every one (--failed)")
    retry.add_argument("ids", nargs="*", metavar="ID")
    retry.add_argument("--failed", action="store_true", help="every failed job")
    retry.add_argument("--type", dest="job_type", metavar="TYPE", help="with --failed: of a type")
    cancel = command("cancel", "pending jobs to failed, never run (retry undoes it)")
    cancel.add_argument("ids", nargs="+", metavar="ID")
    purge = command("purge", "delete done jobs older than a duration (90s, 15m, 12h, 7d)")
    purge.add_argument("--done-older-than", type=duration, required=True, metavar="DURATION")
    command("stats", "jobs per state and type, and the oldest due job's wait")


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What argparse cannot say alone: `retry` takes ids or --failed, not both."""
    if args.jobs_command == "retry" and bool(args.ids) == args.failed:
        parser.error("jobs retry: give job ids, or --failed (and maybe --type), not both")
    if args.jobs_command == "retry" and args.job_type and not args.failed:
        parser.error("jobs retry: --type goes with --failed")


async def run(config: ServiceConfig, args: argparse.Namespace) -> Any:
    """Carry out a `jobs` command; the JSON document to print."""
    async with open_database(config.resource_settings["db"]) as db:
        table, admin = JobTable(db), JobAdmin(db)
        match args.jobs_command:
            case "enqueue":
                declared = REGISTERED.get(type_of(args.payload) or "")
                queue = DEFAULT_QUEUE if declared is None else declared.queue
                ids = await table.enqueue([args.payload] * args.count, queue=queue)
                document: Any = {"enqueued": len(ids)}
            case "list":
                found = await admin.find(state=args.state, job_type=args.job_type, limit=args.limit)
                document = [record.as_json() for record in found]
            case "show":
                document = (await admin.show(args.id)).as_json(with_payload=True)
            case "retry" if args.failed:
                document = {"retried": await admin.retry_failed(job_type=args.job_type)}
            case "retry":
                document = {"retried": await admin.retry(args.ids)}
            case "cancel":
                document = {"cancelled": await admin.cancel(args.ids)}
            case "purge":
                older_than = args.done_older_than
                document = {"purged": await table.purge_all("done", older_than=older_than)}
            case _:
                document = await admin.stats()
    return document


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def duration(text: str) -> float:
    """Seconds from `90`, `90s`, `15m`, `12h`, `7d` or `2w`."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (say 90s, 15m, 12h, 7d or 2w)")
    return float(match[1]) * _SECONDS[match[2]]


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
