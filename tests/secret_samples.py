"""Realistic secrets for the redaction tests, made from the same catalogue the
redactor is built from, and the check that none of one leaked.

A secret is kept with the length of its public part (a format's literal
prefix, Azure's visible lead): a leak is the whole secret, or any 12
consecutive characters of it that are not all public.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from hypothesis import strategies as st

from agentlog.redaction.shapes import SHAPES, Shape

WINDOW = 12


@dataclass(frozen=True)
class Secret:
    value: str
    public: int = 0  # length of the leading part that is no secret (a format's prefix)
    shape: str = "generic"

    def leaked_in(self, data: bytes) -> str | None:
        """What of this secret `data` holds, if anything."""
        encoded = [self.value, quote(self.value, safe="")]
        for form in encoded:
            if form.encode() in data:
                return form
        for i in range(max(0, self.public - WINDOW + 1), len(self.value) - WINDOW + 1):
            window = self.value[i : i + WINDOW]
            if window.encode() in data:
                return window
        return None


def _from_shape(shape: Shape, choose) -> Secret:
    """`choose(options)` picks one element; `choose(alphabet, n)` n characters."""
    before = choose(shape.before.alphabet, shape.before.lo) if shape.before else ""
    prefix = choose(shape.prefixes)
    body = ""
    for part in shape.parts:
        body += part if isinstance(part, str) else choose(part.alphabet, (part.lo, part.hi))
    # Azure's lead stays visible by design; it is at most 4 characters.
    return Secret(before + prefix + body, len(before) + len(prefix), shape.name)


def sample(shape: Shape, rng: random.Random) -> Secret:
    def choose(options, n=None):
        if n is None:
            return rng.choice(options)
        count = rng.randint(*n) if isinstance(n, tuple) else n
        return "".join(rng.choice(options) for _ in range(count))

    return _from_shape(shape, choose)


@st.composite
def tokens(draw) -> Secret:
    """A token of any format in the catalogue, with realistic lengths."""
    shape = draw(st.sampled_from(SHAPES))

    def choose(options, n=None):
        if n is None:
            return draw(st.sampled_from(options))
        lo, hi = n if isinstance(n, tuple) else (n, n)
        return draw(st.text(options, min_size=lo, max_size=hi))

    return _from_shape(shape, choose)


def generic_secrets() -> st.SearchStrategy[Secret]:
    """A password or key of no known format (caught only by its name)."""
    alnum = string.ascii_letters + string.digits
    return st.text(alnum, min_size=13, max_size=40).map(lambda s: Secret("Zq9" + s))


def searched_files(logs: Path) -> list[Path]:
    """Everything under the logs directory but the raw evidence."""
    return [
        p
        for p in logs.rglob("*")
        if p.is_file() and not (p.match("capture_*.pcap") or p.name == "keys.log")
    ]


def assert_not_stored(logs: Path, *secrets: Secret) -> None:
    for path in searched_files(logs):
        data = path.read_bytes()
        for secret in secrets:
            leak = secret.leaked_in(data)
            assert leak is None, f"{secret.shape} secret {leak!r} found in {path}"


__all__ = ["Secret", "assert_not_stored", "generic_secrets", "sample", "tokens"]
