"""agentlog audit: every flow in the captures is accounted for by the journal, or named.

Exit 0 when every flow the agent started has its event, 1 otherwise (each
one printed), 2 on bad input (no journal, no captures, a file that is not a
pcap).
"""

import argparse
import json

from agentlog.audit import audit, proxy_addresses
from agentlog.capture.flows import agent_flows
from agentlog.capture.pcapfile import PcapError
from agentlog.errors import UserError
from agentlog.formats.text import printable
from agentlog.journal.reader import events
from agentlog.logsdir import LogsDir


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "audit", parents=[parent], help="check every captured flow has its journal event"
    )
    p.add_argument("--json", action="store_true", help="one JSON document, for machines")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    logs = LogsDir(args.logs)
    journal = list(events(logs.existing_journal()))
    captures = logs.capture_files()
    if not captures:
        raise UserError(f"no captures in {logs.root}: audit needs a run with capture")
    proxy = proxy_addresses(journal)
    if not proxy:
        raise UserError(f"{logs.journal} has no proxy start event to tell the agent's side by")
    try:
        result = audit(agent_flows(captures, proxy), journal)
    except PcapError as e:
        raise UserError(str(e)) from None
    if args.json:
        found = [
            {
                "protocol": f.protocol,
                "source": f.source,
                "destination": f.destination,
                "port": f.port,
                "first_seen": f.first_seen,
                "file": f.file,
            }
            for f in result.unaccounted
        ]
        print(json.dumps({"flows": len(result.flows), "unaccounted": found}))
    elif result.ok:
        print(f"ok: {len(result.flows)} flows, each accounted for by the journal")
    else:
        for flow in result.unaccounted:
            print(printable(f"unaccounted: {flow} (in {flow.file})"))
        print(f"{len(result.unaccounted)} of {len(result.flows)} flows have no journal event")
    return 0 if result.ok else 1
