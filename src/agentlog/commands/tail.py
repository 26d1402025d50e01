"""agentlog tail: follow the journal as events are written."""

import argparse
import json
import time

from agentlog.commands.text import printable
from agentlog.errors import UserError
from agentlog.logsdir import LogsDir


def _describe(event: dict) -> str:
    kind = event.get("event")
    head = f"{event.get('timestamp', '')}  {event.get('id')}  {kind:<10}"
    if kind == "request":
        return (
            f"{head} {event.get('method')} {event.get('scheme')}://{event.get('domain')}"
            f":{event.get('port')}{event.get('path')}"
        )
    if kind == "response":
        return f"{head} {event.get('status')} {event.get('response_bytes')} bytes"
    if kind == "tcp":
        return f"{head} tcp://{event.get('domain')}:{event.get('port')} {event.get('decision')}"
    if kind == "tcp_end":
        return (
            f"{head} {event.get('ended')} {event.get('bytes_from_client')} B out,"
            f" {event.get('bytes_from_server')} B in"
        )
    detail = event.get("error") or event.get("reason") or event.get("action") or ""
    return f"{head} {detail}"


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("tail", parents=[parent], help="follow events as they are recorded")
    p.add_argument("--json", action="store_true", help="print raw journal lines")
    p.add_argument("-n", "--lines", type=int, default=10, help="start with the last N events")
    p.add_argument("--no-follow", action="store_true", help="print and exit")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = LogsDir(args.logs).journal
    while not path.exists():
        if args.no_follow:
            raise UserError(f"no journal at {path}")
        time.sleep(0.2)
    with open(path, "rb") as f:
        backlog = f.readlines()
        pending = b""
        if backlog and not backlog[-1].endswith(b"\n"):
            pending = backlog.pop()
        for line in backlog[-args.lines :] if args.lines > 0 else []:
            _emit(line, args.json)
        try:
            while not args.no_follow:
                chunk = f.readline()
                if not chunk:
                    time.sleep(0.1)
                    continue
                pending += chunk
                if pending.endswith(b"\n"):
                    _emit(pending, args.json)
                    pending = b""
        except KeyboardInterrupt:
            pass
    return 0


def _emit(line: bytes, raw: bool) -> None:
    if raw:
        print(line.decode("utf-8", "replace").rstrip("\n"), flush=True)
        return
    try:
        print(printable(_describe(json.loads(line))), flush=True)
    except ValueError:
        print(printable(line.decode("utf-8", "replace").rstrip("\n")), flush=True)
