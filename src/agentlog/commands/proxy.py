"""agentlog proxy: the recording proxy. Every option has an AGENTLOG_* variable."""

import argparse
import asyncio
import os
import signal
import socket
from pathlib import Path

from agentlog.capture.supervisor import CaptureSettings
from agentlog.config import (
    ProxyConfig,
    parse_duration,
    parse_hostport,
    parse_route,
    parse_size,
)
from agentlog.errors import ConfigError
from agentlog.logsdir import LogsDir
from agentlog.policy import Policy


def _env_list(name: str) -> list[str]:
    return [item for item in os.environ.get(name, "").replace(",", " ").split() if item]


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p = sub.add_parser("proxy", parents=[parent], help="run the recording proxy")
    p.add_argument(
        "--listen",
        default=env("AGENTLOG_LISTEN", "127.0.0.1:8080"),
        help="explicit proxy address HOST:PORT (AGENTLOG_LISTEN)",
    )
    p.add_argument(
        "--transparent",
        default=env("AGENTLOG_TRANSPARENT"),
        help="also listen for redirected traffic on HOST:PORT (AGENTLOG_TRANSPARENT)",
    )
    p.add_argument(
        "--allow",
        action="append",
        default=_env_list("AGENTLOG_ALLOW"),
        metavar="PATTERN",
        help="allow HOST[:PORT] globs; then all else is refused",
    )
    p.add_argument(
        "--deny",
        action="append",
        default=_env_list("AGENTLOG_DENY"),
        metavar="PATTERN",
        help="refuse HOST[:PORT] globs (wins over --allow)",
    )
    p.add_argument(
        "--route",
        action="append",
        default=_env_list("AGENTLOG_ROUTE"),
        metavar="HOST=ADDR:PORT",
        help="dial ADDR:PORT for HOST, record it as HOST",
    )
    p.add_argument(
        "--upstream-ca",
        type=Path,
        default=env("AGENTLOG_UPSTREAM_CA"),
        help="trust this CA too for upstream TLS (AGENTLOG_UPSTREAM_CA)",
    )
    p.add_argument(
        "--body-cap",
        default=env("AGENTLOG_BODY_CAP", "1M"),
        help="keep at most this much of each body (AGENTLOG_BODY_CAP, default 1M)",
    )
    p.add_argument(
        "--fingerprint",
        action="store_true",
        default=env("AGENTLOG_FINGERPRINT", "") not in ("", "0", "false"),
        help="tag redacted values with a keyed fingerprint",
    )
    p.add_argument(
        "--journal-key",
        type=Path,
        default=env("AGENTLOG_JOURNAL_KEY"),
        help="the chain key file (default LOGS/journal.key)",
    )
    p.add_argument("--session", default=env("AGENTLOG_SESSION"), help="session id to record")
    p.add_argument(
        "--capture",
        default=env("AGENTLOG_CAPTURE"),
        metavar="IFACE",
        help="run tcpdump on IFACE into LOGS/capture_*.pcap (AGENTLOG_CAPTURE)",
    )
    p.add_argument(
        "--capture-size",
        default=env("AGENTLOG_CAPTURE_SIZE", "100M"),
        help="start a new capture file past this size (default 100M)",
    )
    p.add_argument(
        "--capture-every",
        default=env("AGENTLOG_CAPTURE_EVERY", "1h"),
        help="start a new capture file this often (default 1h)",
    )
    p.set_defaults(run=run)


def config_from(args: argparse.Namespace) -> ProxyConfig:
    """Check every option up front; ValueError carries the one-line complaint."""
    return ProxyConfig(
        logs=Path(args.logs),
        listen=parse_hostport(args.listen, "--listen"),
        transparent=parse_hostport(args.transparent, "--transparent") if args.transparent else None,
        policy=Policy.parse(args.allow, args.deny),
        routes=dict(parse_route(r) for r in args.route),
        upstream_ca=Path(args.upstream_ca) if args.upstream_ca else None,
        body_cap=parse_size(str(args.body_cap)),
        fingerprint=bool(args.fingerprint),
        journal_key=Path(args.journal_key) if args.journal_key else None,
        session=args.session,
        capture=CaptureSettings(
            args.capture,
            parse_size(str(args.capture_size)),
            parse_duration(str(args.capture_every)),
        )
        if args.capture
        else None,
    )


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


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    _check_free(config.listen, "--listen")
    if config.transparent:
        _check_free(config.transparent, "--transparent")
    if config.upstream_ca is not None and not config.upstream_ca.is_file():
        raise ConfigError(f"--upstream-ca {config.upstream_ca} is not a readable file")
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
