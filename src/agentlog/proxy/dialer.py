"""Where a connection goes, decided once, so the policy judges exactly what is dialled.

A connection to NAME:PORT goes to the `--route` target for NAME if there is
one, otherwise to NAME. When the policy has deny rules on addresses
(`--deny 169.254.0.0/16`), the name is resolved here, every answer is
judged (one denied answer refuses the name) and the connection is pinned to
the first answer: DNS cannot tell the check one thing and the connect
another. Answers are kept for a few seconds, so that the gate's check of a
request and the router's connect for it see the same ones; past that the
connect resolves and judges again.

Pinning dials one address: where the resolver's first choice is unreachable
there is no fallback to the next, as an unpinned connect would try.

A plan that needs no lookup (an address, a route to one, a name whose answer
is remembered) is made at once (`plan_now`): the gate judges every request,
and most need none. The verdict on an address and port is kept (it is pure).
"""

import asyncio
import functools
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agentlog.errors import ConfigError
from agentlog.hosts import HostError, canonical_host, ip_address
from agentlog.policy import ALLOWED, Decision, Policy

Resolve = Callable[[str], Awaitable[list[str]]]
REMEMBER = 10.0  # seconds an answer is reused
_MAX_REMEMBERED = 4096


async def system_resolve(name: str) -> list[str]:
    """The name's addresses in the order the system would try them (as asyncio connects)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class Plan:
    name: str  # the canonical name asked for
    target: tuple[str, int]  # what to dial: an address when pinned, else a name
    decision: Decision


class Dialer:
    def __init__(
        self,
        policy: Policy,
        routes: dict[str, tuple[str, int]],
        resolve: Resolve = system_resolve,
        remember: float = REMEMBER,
    ) -> None:
        self.policy = policy
        self.judges_addresses = policy.has_address_rules
        self._judge = functools.lru_cache(maxsize=_MAX_REMEMBERED)(policy.decide_address)
        self.resolve = resolve
        self.remember = remember
        self._answers: dict[str, tuple[float, asyncio.Future[list[str]]]] = {}
        try:
            self.routes = {
                canonical_host(name): (canonical_host(host), port)
                for name, (host, port) in routes.items()
            }
        except HostError as e:
            raise ConfigError(f"bad --route: {e}") from None

    def target(self, host: str, port: int, sni: str | None = None) -> tuple[str, tuple[str, int]]:
        """(canonical name, where to connect) without resolving; HostError for garbage.
        A route is found by the TLS name when there is one, like the certificate check."""
        name = canonical_host(host)
        route = self.routes.get(canonical_host(sni) if sni else name)
        return name, route or (name, port)

    async def plan(self, host: str, port: int, sni: str | None = None) -> Plan:
        """Where to connect, judged. HostError for garbage; OSError if the name does not resolve."""
        if (plan := self.plan_now(host, port, sni)) is not None:
            return plan
        name, (dial, dial_port) = self.target(host, port, sni)
        return self._judged(name, port, (dial, dial_port), await self.addresses(dial))

    def plan_now(self, host: str, port: int, sni: str | None = None) -> Plan | None:
        """`plan` if it needs no lookup, else None. HostError for garbage."""
        name, (dial, dial_port) = self.target(host, port, sni)
        if not self.judges_addresses:
            return Plan(name, (dial, dial_port), ALLOWED)
        answers = [dial] if ip_address(dial) is not None else self._remembered(dial)
        return None if answers is None else self._judged(name, port, (dial, dial_port), answers)

    def _judged(self, name: str, port: int, dial: tuple[str, int], answers: list[str]) -> Plan:
        routed = dial != (name, port)
        for address in answers:
            decision = self._judge(address, dial[1])
            if not decision.allowed:
                how = "is routed to" if routed else "resolves to"
                detail = None if address == name else f"{name} {how} {address}"
                return Plan(name, (address, dial[1]), Decision(False, decision.rule, detail))
        return Plan(name, (answers[0], dial[1]), ALLOWED)

    def _remembered(self, name: str) -> list[str] | None:
        """The name's answer if a lookup gave it and it is still fresh, else None."""
        entry = self._answers.get(name)
        if entry is None or entry[0] < time.monotonic() or not entry[1].done():
            return None
        lookup = entry[1]
        return None if lookup.cancelled() or lookup.exception() else lookup.result()

    async def addresses(self, name: str) -> list[str]:
        """The name's canonical addresses, looked up once per `remember` seconds."""
        now = time.monotonic()
        entry = self._answers.get(name)
        if entry is None or entry[0] < now:
            if len(self._answers) >= _MAX_REMEMBERED:
                self._answers = {k: v for k, v in self._answers.items() if v[0] >= now}
            entry = (now + self.remember, asyncio.ensure_future(self._lookup(name)))
            self._answers[name] = entry
        try:
            return await asyncio.shield(entry[1])
        except OSError:
            if self._answers.get(name) is entry:
                del self._answers[name]  # a failure is not remembered
            raise

    async def _lookup(self, name: str) -> list[str]:
        answers: list[str] = []
        for answer in await self.resolve(name):
            try:
                address = canonical_host(answer)  # an AAAA record of ::ffff:127.0.0.1 is 127.0.0.1
            except HostError:
                continue
            if address not in answers:
                answers.append(address)
        if not answers:
            raise OSError(f"{name} has no usable address")
        return answers
