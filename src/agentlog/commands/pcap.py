"""agentlog pcap: one request's (or session's) packets, decryptable with no settings."""

import argparse
import sys
from pathlib import Path

from agentlog.capture.export import ExportError, export
from agentlog.journal.reader import events, exchanges, find
from agentlog.logsdir import LogsDir


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "pcap", parents=[parent], help="export a request's packets with their TLS secrets (pcapng)"
    )
    p.add_argument("id", nargs="?", help="the request id (a unique prefix is enough)")
    p.add_argument("--session", help="export every request of this session instead")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .pcapng to write")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if (args.id is None) == (args.session is None):
        print("agentlog: error: give a request ID or --session S", file=sys.stderr)
        return 2
    logs = LogsDir(args.logs)
    if not logs.journal.exists():
        print(f"agentlog: error: no journal at {logs.journal}", file=sys.stderr)
        return 2
    merged = exchanges(events(logs.journal))
    if args.id is not None:
        chosen = find(merged, args.id)
        what = f"id {args.id!r}"
    else:
        chosen = [
            x
            for x in merged.values()
            if x.get("session") == args.session and x.get("event") == "request"
        ]
        what = f"session {args.session!r}"
    if len(chosen) == 0 or (args.id is not None and len(chosen) > 1):
        count = "no request" if not chosen else f"{len(chosen)} requests"
        print(f"agentlog: error: {count} with {what}", file=sys.stderr)
        return 1
    try:
        connections = export(logs, chosen, args.output)
    except ExportError as e:
        print(f"agentlog: error: {e}", file=sys.stderr)
        return 1
    print(
        f"{args.output}: {len(chosen)} request(s), {connections} connection(s), "
        "TLS secrets embedded"
    )
    return 0
