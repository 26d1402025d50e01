"""agentlog show ID: one exchange, request and outcome merged, as JSON; or, with
--conversation, a model API call as the conversation it holds."""

import argparse

from agentlog import options
from agentlog.commands.reading import read_exchanges
from agentlog.errors import NotFound, UserError
from agentlog.formats.conversation import exchange_conversation
from agentlog.formats.conversation_text import conversation_lines
from agentlog.formats.exchange import with_bodies
from agentlog.formats.text import printable_json, summary
from agentlog.journal.reader import find
from agentlog.logsdir import LogsDir


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("show", parents=[parent], help="show one request and its response")
    p.add_argument("id", help="the request id (a unique prefix is enough)")
    p.add_argument(
        "--bodies", action="store_true", help="include the stored (redacted) bodies as text"
    )
    options.add_options(p, options.SHOW)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    logs = LogsDir(args.logs)
    found = find(read_exchanges(logs), args.id)
    if len(found) != 1:
        what = "no request" if not found else f"{len(found)} requests"
        raise NotFound(f"{what} with id {args.id!r}")
    if args.conversation:
        conversation = exchange_conversation(logs.root, found[0])
        if conversation is None:
            raise UserError(
                f"{found[0].get('id')} is not a model API call"
                " (POST .../v1/messages, .../chat/completions or .../responses)"
            )
        for line in conversation_lines(conversation, summary(found[0])):
            print(line)
        return 0
    exchange = with_bodies(logs.root, found[0]) if args.bodies else found[0]
    print(printable_json(exchange, indent=2))
    return 0
