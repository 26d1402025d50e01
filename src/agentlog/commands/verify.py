"""agentlog verify: check the journal's keyed chain, name the first bad line.

The chain alone cannot show lines cut off the end; a head kept elsewhere
(`--head` as the proxy printed it, or the proxy's `--head-file`) can.
"""

import argparse
import os

from agentlog import options
from agentlog.errors import UserError
from agentlog.journal import chain, recovery
from agentlog.journal.headfile import Head, HeadFile, format_head
from agentlog.journal.reader import lines
from agentlog.logsdir import LogsDir
from agentlog.readfile import open_regular, read_regular


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("verify", parents=[parent], help="check the journal was not tampered with")
    options.JOURNAL_KEY.add_to(p)
    options.HEAD.add_to(p)
    options.HEAD_FILE.add_to(p)
    p.set_defaults(run=run)


def _heads(args: argparse.Namespace) -> list[tuple[str, Head]]:
    """The heads to check, each with where it came from."""
    heads = []
    if args.head is not None:
        heads.append(("--head", args.head))
    if args.head_file is not None:
        head = HeadFile(args.head_file).read()
        if head is None:
            raise UserError(f"no head file at {args.head_file}")
        heads.append((str(args.head_file), head))
    return heads


def run(args: argparse.Namespace) -> int:
    logs = LogsDir(args.logs)
    key_path = args.journal_key or logs.journal_key
    try:
        key = bytes.fromhex(read_regular(key_path, 4096).decode().strip())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read journal key {key_path}: {e}") from e
    heads = _heads(args)
    journal = logs.journal
    if os.path.lexists(journal):  # a FIFO, a device or a symlink is refused, never read
        os.close(open_regular(journal))
    if not journal.exists() or journal.stat().st_size == 0:
        # A key in the logs directory is there only once a line was written.
        state = "missing" if not journal.exists() else "empty"
        lost = [f"the head ({where}) is seq {h[0]}" for where, h in heads if h[0] > 0]
        print(f"{journal}: the journal is {state}, but its key {key_path} exists", end="")
        print(f"; {', '.join(lost)}: all of it is gone" if lost else ": it was emptied or removed")
        return 1
    checks: list[Head | None] = [head for _, head in heads] or [None]
    verdicts = [chain.verify(lines(journal), key, head) for head in checks]
    failed = next((v for v in verdicts if not v.ok), None)
    if failed is not None:
        # A head not held can fail at a line the chain itself passed.
        if failed.lines >= (failed.bad_line or 0):
            chained = f"the chain of all {failed.lines} lines holds"
        else:
            chained = f"{failed.lines} lines before it verify"
        print(f"{journal}:{failed.bad_line}: {failed.reason} ({chained})")
    else:
        print(f"ok: {verdicts[0].lines} lines, chain intact")
    for r in (failed or verdicts[0]).recoveries:
        print(f"{journal}:{r.line}: seq {r.seq}: {recovery.describe(r.event)}")
    if failed is not None:
        return 1
    for (where, head), verdict in zip(heads, verdicts, strict=False):
        assert verdict.head_line is not None
        after = verdict.lines - verdict.head_line
        grew = f"; the journal grew by {after} lines after it" if after else ": the last line"
        print(f"head {format_head(head)[:24]}... ({where}) is line {verdict.head_line}{grew}")
    return 0
