"""Which hosts the agent may reach (pure).

A pattern is a host glob with an optional port: `api.anthropic.com`,
`*.github.com:443`, `127.0.0.1:*`, `[::1]:8443`. A deny rule always wins;
once any allow rule exists, whatever no allow rule matches is refused.
"""

import fnmatch
import re
from dataclasses import dataclass

from agentlog.errors import ConfigError

_HOST_GLOB = re.compile(r"[a-z0-9*?_.\-]+|\[[0-9a-f:.*?]+\]")


@dataclass(frozen=True)
class Rule:
    kind: str  # "allow" | "deny"
    host: str  # lower-case glob, IPv6 without brackets
    port: int | None  # None: any port

    @classmethod
    def parse(cls, kind: str, text: str) -> "Rule":
        spec = text.strip().lower()
        host, port = spec, None
        if spec.startswith("["):
            end = spec.find("]")
            host, rest = spec[: end + 1], spec[end + 1 :]
            if rest:
                if not rest.startswith(":"):
                    raise ConfigError(f"bad --{kind} pattern {text!r}")
                port = rest[1:]
        elif spec.count(":") == 1:
            host, port = spec.split(":")
        if not host or not _HOST_GLOB.fullmatch(host) or host.startswith("[") != host.endswith("]"):
            raise ConfigError(f"bad --{kind} pattern {text!r}: expected HOST or HOST:PORT")
        if port in (None, "*"):
            number = None
        elif port.isdigit() and 0 < int(port) < 65536:
            number = int(port)
        else:
            raise ConfigError(f"bad --{kind} pattern {text!r}: port must be 1-65535 or *")
        return cls(kind, host.strip("[]"), number)

    def matches(self, host: str, port: int) -> bool:
        return (self.port is None or self.port == port) and fnmatch.fnmatchcase(
            host.lower().strip("[]"), self.host
        )

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.kind} {host}" + ("" if self.port is None else f":{self.port}")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: Rule | None  # the rule that decided; None when the default did

    @property
    def reason(self) -> str:
        if self.rule is not None:
            return f"rule '{self.rule}'"
        return "default allow" if self.allowed else "not on the allowlist"


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()

    @classmethod
    def parse(cls, allow: list[str], deny: list[str]) -> "Policy":
        return cls(
            tuple(Rule.parse("deny", d) for d in deny)
            + tuple(Rule.parse("allow", a) for a in allow)
        )

    def decide(self, host: str, port: int) -> Decision:
        for rule in self.rules:
            if rule.kind == "deny" and rule.matches(host, port):
                return Decision(False, rule)
        allows = [r for r in self.rules if r.kind == "allow"]
        for rule in allows:
            if rule.matches(host, port):
                return Decision(True, rule)
        return Decision(not allows, None)
