"""The `agentlog` command line: one subcommand per module in agentlog.commands."""

import argparse
import sys
from typing import NoReturn

from agentlog import __version__, options
from agentlog.commands import (
    audit,
    ca,
    clean,
    export,
    ls,
    pcap,
    proxy,
    reindex,
    run,
    sessions,
    show,
    tail,
    ui,
    up,
    verify,
)
from agentlog.errors import UserError
from agentlog.formats.text import printable


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2: no usage dump
        print(f"agentlog: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    options.LOGS.add_to(common)
    parser = _Parser(prog="agentlog", description="Record what an AI coding agent sends.")
    parser.add_argument("--version", action="version", version=f"agentlog {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands = (
        proxy,
        up,
        run,
        clean,
        ls,
        show,
        sessions,
        tail,
        verify,
        audit,
        export,
        pcap,
        ca,
        ui,
        reindex,
    )
    for command in commands:
        command.add_parser(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except UserError as e:
        print(f"agentlog: error: {printable(e)}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:  # unreadable logs and the like: one line, not a traceback
        message = f"{e.strerror or e}: {e.filename or ''}".rstrip(": ")
        print(f"agentlog: error: {printable(message)}", file=sys.stderr)
        return 2
