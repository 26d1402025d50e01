"""agentlog ls: the recorded exchanges, newest first."""

import argparse
import fnmatch

from agentlog.commands.reading import read_exchanges
from agentlog.formats.text import printable_json, summary
from agentlog.logsdir import LogsDir


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ls", parents=[parent], help="list recorded requests, newest first")
    p.add_argument("--json", action="store_true", help="one merged JSON exchange per line")
    p.add_argument("-n", "--limit", type=int, default=None, help="show at most N")
    p.add_argument("--domain", metavar="GLOB", help="only domains matching GLOB (*.github.com)")
    p.add_argument("--session", help="only this session")
    p.set_defaults(run=run)


def matches(exchange: dict, args: argparse.Namespace) -> bool:
    if args.session and exchange.get("session") != args.session:
        return False
    domain = str(exchange.get("domain") or "").lower()
    return not args.domain or fnmatch.fnmatchcase(domain, args.domain.lower())


def run(args: argparse.Namespace) -> int:
    chosen = [x for x in read_exchanges(LogsDir(args.logs)).values() if matches(x, args)]
    for exchange in list(reversed(chosen))[: args.limit]:
        print(printable_json(exchange) if args.json else summary(exchange))
    return 0
