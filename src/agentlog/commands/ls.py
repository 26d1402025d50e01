"""agentlog ls: the recorded exchanges, newest first."""

import argparse
import json

from agentlog.commands.errors import existing_journal
from agentlog.commands.text import summary
from agentlog.journal.reader import events, exchanges
from agentlog.logsdir import LogsDir


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ls", parents=[parent], help="list recorded requests, newest first")
    p.add_argument("--json", action="store_true", help="one merged JSON exchange per line")
    p.add_argument("-n", "--limit", type=int, default=None, help="show at most N")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    journal = existing_journal(LogsDir(args.logs))
    listed = list(reversed(exchanges(events(journal)).values()))[: args.limit]
    for exchange in listed:
        print(json.dumps(exchange, ensure_ascii=False) if args.json else summary(exchange))
    return 0
