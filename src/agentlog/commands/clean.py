"""agentlog clean: remove the sandboxes of `agentlog run`s that were killed."""

import argparse
import os

from agentlog.errors import ConfigError
from agentlog.sandbox import leftovers, netns


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "clean", help="remove sandboxes left by killed runs (their processes, links, rules)"
    )
    p.add_argument(
        "names", nargs="*", metavar="NAME", help="only these sandboxes (alPIDsN), if left over"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise ConfigError("agentlog clean removes namespaces and firewall rules: run it as root")
    for name in args.names:
        if not netns.NAME.fullmatch(name):
            raise ConfigError(f"{name!r} is not a sandbox name (alPIDsN)")
    found = leftovers.leftovers()
    chosen = [n for n in found if n in args.names] if args.names else found
    for name in chosen:
        leftovers.remove(name)
        print(f"removed {name}")
    if not chosen:
        print("nothing to clean")
    return 0
