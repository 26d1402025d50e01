"""agentlog tail: follow the journal as events are written."""

import argparse
import collections
import sys
import time
from pathlib import Path

from agentlog.errors import UserError
from agentlog.formats.text import event_line, printable, printable_json_text
from agentlog.journal.reader import Follower, JournalReplaced, MalformedEvent, parse_event
from agentlog.logsdir import LogsDir


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("tail", parents=[parent], help="follow events as they are recorded")
    p.add_argument("--json", action="store_true", help="print raw journal lines")
    p.add_argument("-n", "--lines", type=int, default=10, help="start with the last N events")
    p.add_argument("--no-follow", action="store_true", help="print and exit")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = LogsDir(args.logs).journal
    backlog: int | None = args.lines
    try:
        while True:
            _wait_for(path, args.no_follow)
            try:
                with Follower(path) as journal:
                    if backlog is not None:
                        _print_backlog(journal, backlog, args.json)
                    if args.no_follow:
                        return 0
                    for line in journal.lines():  # ends only by raising
                        _emit(line.data, args.json)
            except (JournalReplaced, FileNotFoundError) as e:
                if args.no_follow:
                    return 0
                print(printable(f"agentlog tail: {e}; following the new journal"), file=sys.stderr)
                backlog = None  # a new journal is shown from its first line
    except KeyboardInterrupt:
        return 0


def _print_backlog(journal: Follower, count: int, raw: bool) -> None:
    """The last `count` complete lines there are now."""
    backlog: collections.deque[bytes] = collections.deque(maxlen=max(count, 0))
    try:
        for line in journal.lines(timeout=0):
            backlog.append(line.data)
    finally:  # what was read stands, even if the journal was then replaced
        for data in backlog:
            _emit(data, raw)


def _wait_for(path: Path, no_follow: bool) -> None:
    while not path.exists():
        if no_follow:
            raise UserError(f"no journal at {path}")
        time.sleep(0.2)


def _emit(line: bytes, raw: bool) -> None:
    """One line of the journal: an event's line, or a malformed line as it is (escaped)."""
    text = line.decode("utf-8", "replace").rstrip("\n")
    if raw:
        print(printable_json_text(text), flush=True)
        return
    try:
        print(event_line(parse_event(line)), flush=True)
    except MalformedEvent:
        print(printable(text), flush=True)
