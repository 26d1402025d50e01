"""agentlog proxy: the recording proxy (its options: agentlog.options.PROXY)."""

import argparse
import asyncio
import signal
import socket

from agentlog import options
from agentlog.config import ProxyConfig
from agentlog.errors import ConfigError
from agentlog.logsdir import LogsDir
from agentlog.options import add_options


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("proxy", parents=[parent], help="run the recording proxy")
    add_options(p, options.PROXY)
    p.set_defaults(run=run)


def _check_free(addr: tuple[str, int], what: str) -> None:
    """Fail fast, with a clear message, on a port that is taken."""
    if addr[1] == 0:
        return
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise ConfigError(f"cannot listen on {addr[0]}:{addr[1]} ({what}): {e.strerror}") from e


def preflight(config: ProxyConfig) -> None:
    """What can be checked before starting: ports free, files there (ConfigError if not)."""
    _check_free(config.listen, "--listen")
    if config.transparent:
        _check_free(config.transparent, "--transparent")
    if config.dns:
        _check_free(config.dns, "--dns")
    if config.upstream_ca is not None and not config.upstream_ca.is_file():
        raise ConfigError(f"--upstream-ca {config.upstream_ca} is not a readable file")


def run(args: argparse.Namespace) -> int:
    config = options.proxy_config(args)
    preflight(config)
    asyncio.run(_serve(config, LogsDir(config.logs)))
    return 0


async def _serve(config: ProxyConfig, logs: LogsDir) -> None:
    """Run the proxy until SIGINT or SIGTERM; StartupError if it cannot start."""
    from agentlog.proxy.service import RecordingProxy  # mitmproxy: only this command needs it

    loop = asyncio.get_running_loop()
    async with RecordingProxy(config, logs) as proxy:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, proxy.stop)
        await proxy.ready()
        await proxy.wait()
