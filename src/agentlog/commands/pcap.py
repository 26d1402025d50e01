"""agentlog pcap: one request's (or session's) packets, decryptable with no settings."""

import argparse
from pathlib import Path

from agentlog.capture.slicer import write_slice
from agentlog.commands.reading import read_exchanges
from agentlog.errors import NotFound, UserError
from agentlog.journal.reader import find
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
        raise UserError("give a request ID or --session S")
    logs = LogsDir(args.logs)
    merged = read_exchanges(logs)
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
        raise NotFound(f"{count} with {what}")
    connections = write_slice(logs, chosen, args.output)
    print(
        f"{args.output}: {len(chosen)} request(s), {connections} connection(s), "
        "TLS secrets embedded"
    )
    return 0
