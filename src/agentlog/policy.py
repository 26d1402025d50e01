"""Which hosts the agent may reach (pure).

A pattern is a host glob with an optional port: `api.anthropic.com`,
`*.github.com:443`, `127.0.0.1:*`, `[::1]:8443`, or an address block:
`169.254.0.0/16`, `[fd00::/8]:443`. A deny rule always wins; once any allow
rule exists, whatever no allow rule matches is refused.

Rules and hosts are compared in their canonical spelling (agentlog.hosts):
`--deny 0x7f000001` means 127.0.0.1 and refuses `127.1` and `[::ffff:7f00:1]`
too; `--deny evil.com` refuses `EVIL.com.`. Deny rules on addresses (an IP,
a block, a glob of digits like `10.*`) are also what `decide_address` applies
to the address a name resolves to, so a name cannot smuggle a denied address.
"""

import fnmatch
import ipaddress
import re
from dataclasses import dataclass

from agentlog.errors import ConfigError
from agentlog.hosts import HostError, ascii_label, canonical_host, reached_by

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_GLOB_V6 = re.compile(r"[0-9a-f:.*?]+")
_GLOB_LABEL = re.compile(r"[a-z0-9*?_\-]+")
# A pattern that can only ever match an address: digits and dots, or has a colon.
_ADDRESS_GLOB = re.compile(r"[0-9.*?]*[0-9][0-9.*?]*|[0-9a-f:.*?]*:[0-9a-f:.*?]*")


def _split(spec: str) -> tuple[str, str | None]:
    """`HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT` -> (host, port text)."""
    if spec.startswith("["):
        end = spec.find("]")
        if end < 0:
            raise ValueError
        host, rest = spec[: end + 1], spec[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError
        return host, rest[1:] if rest else None
    if spec.count(":") == 1:
        host, port = spec.split(":")
        return host, port
    return spec, None


def _network(host: str) -> Network:
    network = ipaddress.ip_network(host.strip("[]"), strict=False)
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        v4 = network.network_address.ipv4_mapped  # ::ffff:a.b.c.d/n
        if v4 is not None:
            return ipaddress.IPv4Network((int(v4), network.prefixlen - 96))
    return network


def _glob(host: str) -> str:
    """A host glob with its literal labels spelled canonically."""
    if host.startswith("["):
        inner = host[1:-1].lower()
        if not host.endswith("]") or not _GLOB_V6.fullmatch(inner):
            raise ValueError
        return inner
    host = host[:-1] if host.endswith(".") else host
    labels = host.split(".")
    for i, label in enumerate(labels):
        if "*" in label or "?" in label:
            if not _GLOB_LABEL.fullmatch(label.lower()):
                raise ValueError
            labels[i] = label.lower()
        else:
            labels[i] = ascii_label(label)
    return ".".join(labels)


@dataclass(frozen=True)
class Rule:
    kind: str  # "allow" | "deny"
    host: str  # canonical host or a glob over canonical hosts; IPv6 without brackets
    port: int | None  # None: any port
    network: Network | None = None  # for an address block; `host` is then its text

    @classmethod
    def parse(cls, kind: str, text: str) -> "Rule":
        try:
            host, port = _split(text.strip())
            if not host:
                raise ValueError
            if "/" in host:
                network = _network(host)
                pattern = str(network)
            else:
                network = None
                wild = "*" in host or "?" in host
                pattern = _glob(host) if wild else canonical_host(host)
        except HostError as e:
            raise ConfigError(f"bad --{kind} pattern {text!r}: {e}") from None
        except ValueError:
            raise ConfigError(
                f"bad --{kind} pattern {text!r}: expected HOST, HOST:PORT or ADDRESS/BITS"
            ) from None
        if port in (None, "*"):
            number = None
        elif port.isdigit() and 0 < int(port) < 65536:
            number = int(port)
        else:
            raise ConfigError(f"bad --{kind} pattern {text!r}: port must be 1-65535 or *")
        return cls(kind, pattern, number, network)

    @property
    def is_address(self) -> bool:
        """Whether the rule names addresses (and so also judges what names resolve to)."""
        return self.network is not None or bool(_ADDRESS_GLOB.fullmatch(self.host))

    def matches(self, host: str, port: int) -> bool:
        """`host` in canonical spelling (agentlog.hosts.canonical_host)."""
        if self.port is not None and self.port != port:
            return False
        if self.network is None:
            return fnmatch.fnmatchcase(host, self.host)
        try:
            return ipaddress.ip_address(host) in self.network
        except ValueError:
            return False  # a name is in no address block

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.kind} {host}" + ("" if self.port is None else f":{self.port}")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: Rule | None  # the rule that decided; None when the default did
    detail: str | None = None  # what else the agent should know (the address that was denied)

    @property
    def reason(self) -> str:
        if self.rule is not None:
            said = f"rule '{self.rule}'"
            return said if self.detail is None else f"{said}: {self.detail}"
        if self.detail is not None:
            return self.detail
        return "default allow" if self.allowed else "not on the allowlist"


ALLOWED = Decision(True, None)


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()

    @classmethod
    def parse(cls, allow: list[str], deny: list[str]) -> "Policy":
        return cls(
            tuple(Rule.parse("deny", d) for d in deny)
            + tuple(Rule.parse("allow", a) for a in allow)
        )

    @property
    def has_address_rules(self) -> bool:
        """Whether any deny rule names addresses: then every name's addresses are judged."""
        return any(r.kind == "deny" and r.is_address for r in self.rules)

    def decide(self, host: str, port: int) -> Decision:
        """Judge the host an agent named, in whatever spelling it used."""
        try:
            canonical = canonical_host(host)
        except HostError as e:
            return Decision(False, None, f"not a valid host: {e}")
        for alias in reached_by(canonical):
            for rule in self.rules:
                if rule.kind == "deny" and rule.matches(alias, port):
                    return Decision(False, rule)
        allows = [r for r in self.rules if r.kind == "allow"]
        for rule in allows:
            if rule.matches(canonical, port):
                return Decision(True, rule)
        return Decision(not allows, None)

    def decide_address(self, address: str, port: int) -> Decision:
        """Judge an address about to be dialled (canonical) by the deny rules on addresses.

        Allow rules are about the names an agent asks for, so they do not apply:
        `--allow api.example.com` lets through whatever address that name has."""
        for alias in reached_by(address):
            for rule in self.rules:
                if rule.kind == "deny" and rule.is_address and rule.matches(alias, port):
                    return Decision(False, rule)
        return ALLOWED
