"""agentlog up: the proxy, capture, the bypass poller and the UI, supervised as one.

If any of them stops on its own, all stop, and the command says which and
exits 1; SIGINT or SIGTERM stop them all cleanly (exit 0), the journal
complete. This is what the proxy container runs.
"""

import argparse
import asyncio
import signal
import sys

from agentlog import options
from agentlog.commands.proxy import preflight
from agentlog.config import ProxyConfig
from agentlog.logsdir import LogsDir
from agentlog.options import add_options


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "up", parents=[parent], help="run the proxy, capture, bypass events and the UI together"
    )
    add_options(p, options.PROXY)
    add_options(p, options.UP)
    p.set_defaults(run=run)


def announce(text: str) -> None:
    print(f"agentlog up: {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    config = options.proxy_config(args)
    preflight(config)
    asyncio.run(_serve(config, LogsDir(config.logs), args.ui, args.firewall_table))
    return 0


async def _serve(
    config: ProxyConfig, logs: LogsDir, ui: tuple[str, int] | None, table: str | None
) -> None:
    from agentlog.services import Services

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Services(config, logs, announce, ui=ui) as services:
        if table is not None:
            services.watch_bypasses(table)
        await services.wait(stop.wait())
