"""agentlog run: a command in a sandbox whose only way out is agentlog (agentlog.sandbox)."""

import argparse
import os

from agentlog import options
from agentlog.logsdir import LogsDir
from agentlog.options import add_options
from agentlog.sandbox import runner
from agentlog.sandbox.agent import agent_user


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "run",
        parents=[parent],
        help="run a command in a network sandbox whose only way out is agentlog (as root)",
        usage="agentlog run [--logs DIR] [--user USER] [--as-root] [OPTIONS] -- COMMAND [ARGS...]",
    )
    add_options(p, [o for o in options.PROXY if o.flag not in options.RUN_SETS])
    add_options(p, options.RUN)
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    # Where the proxy listens and what it captures is the sandbox's to decide.
    args.listen, args.transparent, args.dns, args.capture = ("127.0.0.1", 0), None, None, "-"
    request = runner.Sandboxed(
        config=options.proxy_config(args),
        logs=LogsDir(args.logs),
        user=agent_user(args.user, args.as_root, os.environ),
        command=command,
        ui=args.ui,
    )
    return runner.run(request)
