"""The proxy's settings and the parsers of their values (pure).

Defaults live in one place only, the option table (agentlog.options).
"""

from dataclasses import dataclass
from pathlib import Path

from agentlog.errors import ConfigError
from agentlog.policy import Policy


def parse_hostport(text: str, what: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` -> (host, port); ValueError names `what`."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"bad {what} {text!r}: expected HOST:PORT")
    return host, int(port)


def parse_route(text: str) -> tuple[str, tuple[str, int]]:
    """`HOST=ADDR:PORT` -> (host, (addr, port))."""
    host, sep, target = text.partition("=")
    if not sep or not host.strip():
        raise ConfigError(f"bad --route {text!r}: expected HOST=ADDR:PORT")
    return host.strip().lower(), parse_hostport(target, "--route target")


def parse_size(text: str) -> int:
    """`1048576`, `512k`, `1M`, `1MiB` -> bytes."""
    units = {
        "": 1,
        "k": 1024,
        "kb": 1024,
        "kib": 1024,
        "m": 1024**2,
        "mb": 1024**2,
        "mib": 1024**2,
        "g": 1024**3,
        "gb": 1024**3,
        "gib": 1024**3,
    }
    spec = text.strip().lower()
    digits = spec.rstrip("kmgib")
    if not digits.isdigit() or spec[len(digits) :] not in units:
        raise ConfigError(f"bad size {text!r}: expected a number of bytes like 1048576 or 1M")
    return int(digits) * units[spec[len(digits) :]]


def parse_duration(text: str) -> float:
    """`3600`, `90s`, `30m`, `1h` -> seconds."""
    units = {"": 1, "s": 1, "m": 60, "h": 3600}
    spec = text.strip().lower()
    number = spec.rstrip("smh")
    try:
        seconds = float(number) * units[spec[len(number) :]]
    except (ValueError, KeyError):
        raise ConfigError(f"bad duration {text!r}: expected seconds like 3600, 30m or 1h") from None
    if seconds <= 0:
        raise ConfigError(f"bad duration {text!r}: must be positive")
    return seconds


def parse_count(text: str) -> int:
    """`100` -> 100: a positive whole number."""
    spec = text.strip()
    if not spec.isdigit() or int(spec) < 1:
        raise ConfigError(f"bad number {text!r}: expected a whole number of at least 1")
    return int(spec)


@dataclass(frozen=True)
class Limits:
    """What one client may hold of the proxy (slowloris, HTTP/2 rapid reset)."""

    header_timeout: float  # seconds to complete request headers, from connect or CONNECT
    idle_timeout: float  # seconds a connection may sit with no exchange under way
    max_client_connections: int  # open at once from one client address
    max_resets: int  # streams a client may reset on one connection within a second
    max_header_size: int  # bytes of an HTTP/1 request head (or unparsed data) held at most


@dataclass(frozen=True)
class CaptureSettings:
    interface: str
    max_bytes: int  # start a new file past this size
    max_seconds: float  # start a new file this often


@dataclass(frozen=True)
class ProxyConfig:
    logs: Path
    listen: tuple[str, int]
    transparent: tuple[str, int] | None
    policy: Policy
    routes: dict[str, tuple[str, int]]
    upstream_ca: Path | None
    body_cap: int
    fingerprint: bool
    journal_key: Path | None
    session: str | None
    capture: CaptureSettings | None
    limits: Limits
    head_file: Path | None = None  # kept updated with the journal head (outside the logs)
    accept_cut_journal: bool = False  # start even on a journal that lost whole lines
    dns: tuple[str, int] | None = None  # the DNS listener (UDP and TCP)
