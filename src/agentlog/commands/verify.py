"""agentlog verify: check the journal's keyed chain, name the first bad line."""

import argparse

from agentlog import options
from agentlog.errors import UserError
from agentlog.journal import chain
from agentlog.journal.reader import lines
from agentlog.logsdir import LogsDir


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("verify", parents=[parent], help="check the journal was not tampered with")
    options.JOURNAL_KEY.add_to(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    logs = LogsDir(args.logs)
    key_path = args.journal_key or logs.journal_key
    try:
        key = bytes.fromhex(key_path.read_text().strip())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read journal key {key_path}: {e}") from e
    verdict = chain.verify(lines(logs.existing_journal()), key)
    if verdict.ok:
        print(f"ok: {verdict.lines} lines, chain intact")
        return 0
    print(
        f"{logs.journal}:{verdict.bad_line}: {verdict.reason}"
        f" ({verdict.lines} lines before it verify)"
    )
    return 1
