"""agentlog show ID: one exchange, request and outcome merged, as JSON."""

import argparse
import json

from agentlog.commands.errors import CommandError, existing_journal
from agentlog.journal.reader import events, exchanges, find
from agentlog.logsdir import LogsDir


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("show", parents=[parent], help="show one request and its response")
    p.add_argument("id", help="the request id (a unique prefix is enough)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    found = find(exchanges(events(existing_journal(LogsDir(args.logs)))), args.id)
    if len(found) != 1:
        what = "no request" if not found else f"{len(found)} requests"
        raise CommandError(f"{what} with id {args.id!r}", status=1)
    print(json.dumps(found[0], indent=2, ensure_ascii=False))
    return 0
