"""agentlog ui: the web UI over a logs directory (reads the journal, never writes it)."""

import argparse

from agentlog import options
from agentlog.logsdir import LogsDir


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "ui", parents=[parent], help="the web UI: every request, live, searchable (token-guarded)"
    )
    options.add_options(p, options.UI)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from agentlog.ui.app import serve  # FastAPI and uvicorn only when the UI runs

    return serve(LogsDir(args.logs), args.listen)
