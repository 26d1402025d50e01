"""Every command-line option, declared once: flag, environment variable, default, parser, help.

The argparse parsers are built from these tables, and a test holds README's
option table to them, so a default can only change in one place. Values from
the environment go through the same parser as values from the command line
(argparse's `type=`), so bad input gets the same one-line error either way.
"""

import argparse
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentlog.config import (
    CaptureSettings,
    Limits,
    ProxyConfig,
    parse_count,
    parse_duration,
    parse_hostport,
    parse_route,
    parse_size,
)
from agentlog.errors import ConfigError
from agentlog.journal.headfile import parse_head
from agentlog.policy import Policy, Rule

_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Option:
    flag: str  # "--body-cap"
    env: str  # "AGENTLOG_BODY_CAP"
    help: str
    parse: Callable[[str], Any] = str
    default: str | None = None  # as the user would type it; parsed like user input
    metavar: str | None = None
    repeat: bool = False  # may be given many times; the variable is comma-separated
    switch: bool = False  # no value; the variable is 1/true/yes/on

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        from_env = os.environ.get(self.env)
        help = f"{self.help} ({self.env}" + (f", default {self.default})" if self.default else ")")
        if self.switch:
            on = from_env is not None and from_env.strip().lower() in _TRUE
            parser.add_argument(self.flag, action="store_true", default=on, help=help)
        elif self.repeat:
            # The variable's items come first; each flag adds one more. argparse does not
            # parse a list default, so they are parsed here (a ConfigError reaches cli.main).
            items = [self.parse(i) for i in (from_env or "").replace(",", " ").split() if i]
            parser.add_argument(
                self.flag,
                action="append",
                type=_checked(self.parse),
                default=items,
                metavar=self.metavar,
                help=help,
            )
        else:
            # A string default is parsed by argparse through `type` too.
            parser.add_argument(
                self.flag,
                type=_checked(self.parse),
                default=from_env if from_env is not None else self.default,
                metavar=self.metavar,
                help=help,
            )


def _checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """ConfigError -> argparse's own error, so the message is printed as it is."""

    def checked(text: str) -> Any:
        try:
            return parse(text)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    checked.__name__ = getattr(parse, "__name__", "value")
    return checked


def _path(text: str) -> Path:
    return Path(text)


def _rule(kind: str) -> Callable[[str], Rule]:
    def rule(text: str) -> Rule:
        return Rule.parse(kind, text)

    return rule


def _hostport(flag: str) -> Callable[[str], tuple[str, int]]:
    def hostport(text: str) -> tuple[str, int]:
        return parse_hostport(text, flag)

    return hostport


LOGS = Option("--logs", "AGENTLOG_LOGS", "the logs directory", _path, "./logs", "DIR")

JOURNAL_KEY = Option(
    "--journal-key",
    "AGENTLOG_JOURNAL_KEY",
    "the chain key (default DIR/journal.key); keep it elsewhere to make forgery harder still",
    _path,
    metavar="FILE",
)

HEAD_FILE = Option(
    "--head-file",
    "AGENTLOG_HEAD_FILE",
    "the journal head (SEQ:HMAC), kept updated by the proxy and checked by verify;"
    " keep it outside the logs directory",
    _path,
    metavar="FILE",
)

HEAD = Option(
    "--head",
    "AGENTLOG_HEAD",
    "a journal head the proxy printed (SEQ:HMAC): the journal must hold that line",
    parse_head,
    metavar="SEQ:HMAC",
)

PROXY = (
    Option(
        "--listen",
        "AGENTLOG_LISTEN",
        "explicit proxy address; port 0 picks one",
        _hostport("--listen"),
        "127.0.0.1:8080",
        "HOST:PORT",
    ),
    Option(
        "--transparent",
        "AGENTLOG_TRANSPARENT",
        "also accept traffic redirected by iptables/nftables here",
        _hostport("--transparent"),
        metavar="HOST:PORT",
    ),
    Option(
        "--dns",
        "AGENTLOG_DNS",
        "also answer DNS here (UDP and TCP): names judged by the policy, routed ones answered here",
        _hostport("--dns"),
        metavar="HOST:PORT",
    ),
    Option(
        "--allow",
        "AGENTLOG_ALLOW",
        "once given, only matching hosts are reachable",
        _rule("allow"),
        metavar="PATTERN",
        repeat=True,
    ),
    Option(
        "--deny",
        "AGENTLOG_DENY",
        "refuse matching hosts; wins over --allow",
        _rule("deny"),
        metavar="PATTERN",
        repeat=True,
    ),
    Option(
        "--route",
        "AGENTLOG_ROUTE",
        "connect to ADDR:PORT for HOST; the record, Host, SNI and certificate check stay HOST",
        parse_route,
        metavar="HOST=ADDR:PORT",
        repeat=True,
    ),
    Option(
        "--upstream-ca",
        "AGENTLOG_UPSTREAM_CA",
        "trust one more CA for upstream TLS (the system store is always trusted)",
        _path,
        metavar="FILE",
    ),
    Option(
        "--body-cap",
        "AGENTLOG_BODY_CAP",
        "keep at most this much of each body, as sent and as decoded; bodies stream through whole",
        parse_size,
        "1M",
        "SIZE",
    ),
    Option(
        "--fingerprint",
        "AGENTLOG_FINGERPRINT",
        "redacted values become [REDACTED:<keyed hash>], so one key is recognised across requests",
        switch=True,
    ),
    JOURNAL_KEY,
    HEAD_FILE,
    Option(
        "--accept-cut-journal",
        "AGENTLOG_ACCEPT_CUT_JOURNAL",
        "start even if the journal lost whole lines (empty, or short of the head file);"
        " the loss is recorded",
        switch=True,
    ),
    Option(
        "--session",
        "AGENTLOG_SESSION",
        "the session id to record (default: a new one)",
        metavar="ID",
    ),
    Option(
        "--capture",
        "AGENTLOG_CAPTURE",
        "run tcpdump on IFACE into DIR/capture_*.pcap",
        metavar="IFACE",
    ),
    Option(
        "--capture-size",
        "AGENTLOG_CAPTURE_SIZE",
        "start a new capture file past this size",
        parse_size,
        "100M",
        "SIZE",
    ),
    Option(
        "--capture-every",
        "AGENTLOG_CAPTURE_EVERY",
        "start a new capture file this often",
        parse_duration,
        "1h",
        "DURATION",
    ),
    Option(
        "--header-timeout",
        "AGENTLOG_HEADER_TIMEOUT",
        "close a client connection that has not sent complete request headers this long after "
        "it opened (or after its CONNECT)",
        parse_duration,
        "10s",
        "DURATION",
    ),
    Option(
        "--idle-timeout",
        "AGENTLOG_IDLE_TIMEOUT",
        "close a client connection that has had no exchange under way for this long",
        parse_duration,
        "60s",
        "DURATION",
    ),
    Option(
        "--max-client-connections",
        "AGENTLOG_MAX_CLIENT_CONNECTIONS",
        "refuse a client address more connections than this at once",
        parse_count,
        "256",
        "N",
    ),
    Option(
        "--max-resets",
        "AGENTLOG_MAX_RESETS",
        "close an HTTP/2 connection whose client resets more than N streams in a second",
        parse_count,
        "100",
        "N",
    ),
    Option(
        "--max-header-size",
        "AGENTLOG_MAX_HEADER_SIZE",
        "answer 431 and close when an HTTP/1 request's headers run past this size",
        parse_size,
        "1M",
        "SIZE",
    ),
)

UI = (
    Option(
        "--listen",
        "AGENTLOG_UI_LISTEN",
        "the UI's address; keep it on this machine (an SSH tunnel reaches it from elsewhere)",
        _hostport("--listen"),
        "127.0.0.1:8888",
        "HOST:PORT",
    ),
)


WITH_UI = Option(
    "--ui",
    "AGENTLOG_UI",
    "also serve the web UI here (`agentlog ui`, supervised with the proxy)",
    _hostport("--ui"),
    metavar="HOST:PORT",
)

# agentlog up: the proxy's options and these.
UP = (
    WITH_UI,
    Option(
        "--firewall-table",
        "AGENTLOG_FIREWALL_TABLE",
        "write what this table of agentlog's firewall drops as bypass events",
        metavar="TABLE",
    ),
)

# agentlog run: these, and the proxy's options but where it listens and captures.
RUN = (
    Option(
        "--user",
        "AGENTLOG_USER",
        "run the command as this unprivileged user (default: the user sudo was run by)",
        metavar="USER",
    ),
    Option(
        "--as-root",
        "AGENTLOG_AS_ROOT",
        "run the command as root: it can then leave the sandbox and reach the logs",
        switch=True,
    ),
    WITH_UI,
)
RUN_SETS = ("--listen", "--transparent", "--dns", "--capture")  # run chooses these itself

# agentlog show ID: this too.
SHOW = (
    Option(
        "--conversation",
        "AGENTLOG_CONVERSATION",
        "a model API call as a conversation: model, system prompt, messages, reply,"
        " tool calls, stop reason, usage",
        switch=True,
    ),
)

# agentlog sessions [SESSION]
SESSIONS = (
    Option(
        "--json",
        "AGENTLOG_SESSIONS_JSON",
        "print JSON: the sessions with their totals, or the session's turns",
        switch=True,
    ),
)


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    for option in options:
        option.add_to(parser)


def proxy_config(args: argparse.Namespace) -> ProxyConfig:
    """The proxy's settings from parsed PROXY (and LOGS) options."""
    return ProxyConfig(
        logs=args.logs,
        listen=args.listen,
        transparent=args.transparent,
        policy=Policy(tuple(args.deny) + tuple(args.allow)),
        routes=dict(args.route),
        upstream_ca=args.upstream_ca,
        body_cap=args.body_cap,
        fingerprint=args.fingerprint,
        journal_key=args.journal_key,
        session=args.session,
        capture=CaptureSettings(args.capture, args.capture_size, args.capture_every)
        if args.capture
        else None,
        limits=Limits(
            header_timeout=args.header_timeout,
            idle_timeout=args.idle_timeout,
            max_client_connections=args.max_client_connections,
            max_resets=args.max_resets,
            max_header_size=args.max_header_size,
        ),
        head_file=args.head_file,
        accept_cut_journal=args.accept_cut_journal,
        dns=args.dns,
    )
