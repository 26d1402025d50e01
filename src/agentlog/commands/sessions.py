"""agentlog sessions [SESSION]: the sessions with the totals of their model calls
(requests, tokens, tool calls); with SESSION, its model calls as turns in order."""

import argparse
import dataclasses

from agentlog import options
from agentlog.commands.reading import read_exchanges
from agentlog.conversation.session import SessionSummary, summarize
from agentlog.errors import NotFound
from agentlog.formats.conversation import session_turns
from agentlog.formats.conversation_text import session_lines, sessions_table
from agentlog.formats.text import printable_json
from agentlog.logsdir import LogsDir


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "sessions", parents=[parent], help="sessions with their model calls, tokens and tools"
    )
    p.add_argument("session", nargs="?", help="one session (a unique prefix is enough)")
    options.add_options(p, options.SESSIONS)
    p.set_defaults(run=run)


def by_session(exchanges: dict[str, dict]) -> dict[str, list[dict]]:
    """session -> its exchanges in journal order (sessions in order of first use)."""
    grouped: dict[str, list[dict]] = {}
    for exchange in exchanges.values():
        grouped.setdefault(str(exchange.get("session") or ""), []).append(exchange)
    return grouped


def _json(summary: SessionSummary, exchanges: list[dict], turns: bool) -> dict:
    shown = dataclasses.asdict(summary)
    if not turns:
        del shown["turns"]
    first = exchanges[0].get("timestamp") if exchanges else None
    return {**shown, "exchanges": len(exchanges), "first_seen": first}


def run(args: argparse.Namespace) -> int:
    logs = LogsDir(args.logs)
    grouped = by_session(read_exchanges(logs))
    if args.session is not None:
        wanted = args.session.upper()
        chosen = [s for s in grouped if s.upper().startswith(wanted)]
        if args.session in grouped:
            chosen = [args.session]
        if len(chosen) != 1:
            what = "no session" if not chosen else f"{len(chosen)} sessions"
            raise NotFound(f"{what} matching {args.session!r}")
        session = chosen[0]
        exchanges = grouped[session]
        summary = summarize(session, session_turns(logs.root, exchanges))
        if args.json:
            print(printable_json(_json(summary, exchanges, turns=True), indent=2))
        else:
            for line in session_lines(summary, len(exchanges)):
                print(line)
        return 0
    rows = []
    for session, exchanges in grouped.items():
        summary = summarize(session, session_turns(logs.root, exchanges))
        rows.append((summary, exchanges))
    if args.json:
        for summary, exchanges in rows:
            print(printable_json(_json(summary, exchanges, turns=False)))
        return 0
    table = [(s, len(x), str(x[0].get("timestamp") or "")) for s, x in rows]
    for line in sessions_table(table):
        print(line)
    return 0
