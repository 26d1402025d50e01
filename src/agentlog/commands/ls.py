"""agentlog ls: the recorded exchanges, newest first."""

import argparse
import json
import sys

from agentlog.commands.text import summary
from agentlog.journal.reader import events, exchanges
from agentlog.logsdir import LogsDir


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ls", parents=[parent], help="list recorded requests, newest first")
    p.add_argument("--json", action="store_true", help="one merged JSON exchange per line")
    p.add_argument("-n", "--limit", type=int, default=None, help="show at most N")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    logs = LogsDir(args.logs)
    if not logs.journal.exists():
        print(f"agentlog: error: no journal at {logs.journal}", file=sys.stderr)
        return 2
    listed = list(reversed(exchanges(events(logs.journal)).values()))[: args.limit]
    for exchange in listed:
        print(json.dumps(exchange, ensure_ascii=False) if args.json else summary(exchange))
    return 0
