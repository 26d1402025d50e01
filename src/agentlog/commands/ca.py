"""agentlog ca: where the CA certificate is, and its SHA-256 fingerprint."""

import argparse

from agentlog import ca
from agentlog.logsdir import LogsDir


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "ca", parents=[parent], help="print the CA certificate's path and fingerprint (creating it)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    logs = LogsDir(args.logs)
    logs.prepare()
    ca.ensure_ca(logs)
    print(logs.ca_cert)
    print(f"SHA256 Fingerprint={ca.fingerprint(logs.ca_cert)}")
    return 0
