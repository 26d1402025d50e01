"""agentlog reindex: rebuild DIR/index.db (the UI's index) from the journal."""

import argparse

from agentlog.logsdir import LogsDir
from agentlog.ui.index import rebuild


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("reindex", parents=[parent], help="rebuild the web UI's index.db")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    logs = LogsDir(args.logs)
    logs.existing_journal()
    indexer = rebuild(logs)
    print(f"{logs.index_db}: indexed to seq {indexer.indexed_seq}")
    return 0
