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
    run,
    show,
    tail,
    up,
    verify,
)
from agentlog.errors import UserError


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
    for command in (proxy, up, run, clean, ls, show, tail, verify, audit, export, pcap, ca):
        command.add_parser(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except UserError as e:
        print(f"agentlog: error: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:  # unreadable logs and the like: one line, not a traceback
        print(
            f"agentlog: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr
        )
        return 2
