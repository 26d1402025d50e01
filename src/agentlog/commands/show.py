"""agentlog show ID: one exchange, request and outcome merged, as JSON."""

import argparse
import json
from pathlib import Path

from agentlog.errors import NotFound
from agentlog.journal.reader import events, exchanges, find, read_body
from agentlog.logsdir import LogsDir


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("show", parents=[parent], help="show one request and its response")
    p.add_argument("id", help="the request id (a unique prefix is enough)")
    p.add_argument(
        "--bodies", action="store_true", help="include the stored (redacted) bodies as text"
    )
    p.set_defaults(run=run)


def body_text(root: Path, ref: object) -> str | None:
    raw = read_body(root, ref)
    return None if raw is None else raw.decode("utf-8", "backslashreplace")


def with_bodies(root: Path, exchange: dict) -> dict:
    shown = dict(exchange)
    shown["request_body_text"] = body_text(root, exchange.get("request_body"))
    if "response" in exchange:
        response = dict(exchange["response"])
        response["response_body_text"] = body_text(root, response.get("response_body"))
        shown["response"] = response
    return shown


def run(args: argparse.Namespace) -> int:
    logs = LogsDir(args.logs)
    found = find(exchanges(events(logs.existing_journal())), args.id)
    if len(found) != 1:
        what = "no request" if not found else f"{len(found)} requests"
        raise NotFound(f"{what} with id {args.id!r}")
    exchange = with_bodies(logs.root, found[0]) if args.bodies else found[0]
    print(json.dumps(exchange, indent=2, ensure_ascii=False))
    return 0
