"""agentlog export --har: the recorded exchanges as HAR 1.2 (browser devtools, HTTP Toolkit)."""

import argparse
from pathlib import Path

from agentlog.commands.reading import read_exchanges
from agentlog.errors import NotFound
from agentlog.formats.har import har
from agentlog.formats.text import printable_json
from agentlog.logsdir import LogsDir


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("export", parents=[parent], help="export recorded requests as HAR")
    p.add_argument("--har", action="store_true", required=True, help="write HAR 1.2")
    p.add_argument("--session", help="only this session's requests")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .har file to write")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    logs = LogsDir(args.logs)
    chosen = [
        x
        for x in read_exchanges(logs).values()
        if x.get("event") == "request"
        and (args.session is None or x.get("session") == args.session)
    ]
    if not chosen:
        raise NotFound("no recorded requests to export")
    # Escaped like terminal output: the same values, safe to `cat` as well.
    args.output.write_text(printable_json(har(logs.root, chosen), indent=1), encoding="utf-8")
    print(f"{args.output}: {len(chosen)} request(s)")
    return 0
