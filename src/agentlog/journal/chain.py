"""The journal's keyed chain (pure functions).

Each line carries `prev`, the HMAC-SHA256 of the previous line's bytes, and
ends with `mac`, the HMAC of the line's own bytes up to that field. `prev`
catches a deleted, reordered or inserted line; `mac` catches an edit to any
line, the last one included. Neither can be recomputed without the key.
"""

import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_MAC_SUFFIX = re.compile(rb',"mac":"([0-9a-f]{64})"}\n\Z')


def digest(key: bytes, data: bytes) -> str:
    return hmac.digest(key, data, "sha256").hex()


def _dumps(event: object) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def printable_text(node: object) -> object:
    """Bytes that were not UTF-8 (mitmproxy keeps them as lone surrogates) become
    visible escapes like \\xff: the journal stays valid UTF-8 JSON."""
    if isinstance(node, str):
        try:
            return node.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a surrogate that never was a byte (JSON "\ud800")
            return node.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(node, dict):
        return {printable_text(k): printable_text(v) for k, v in node.items()}
    if isinstance(node, list):
        return [printable_text(v) for v in node]
    return node


def seal(event: Mapping[str, object], key: bytes, prev_line: bytes) -> bytes:
    """Serialise `event` as one journal line chained to `prev_line` (b"" for the first)."""
    chained = {**event, "prev": digest(key, prev_line)}
    try:
        body = _dumps(chained)
    except UnicodeEncodeError:  # agent-sent bytes that are not UTF-8: rare, so checked late
        body = _dumps(printable_text(chained))
    return body[:-1] + b',"mac":"' + digest(key, body).encode() + b'"}\n'


@dataclass(frozen=True)
class Verdict:
    lines: int  # complete lines read
    bad_line: int | None = None  # 1-based number of the first line that fails
    reason: str = ""
    torn: bool = False  # the last line has no newline: a write cut short

    @property
    def ok(self) -> bool:
        return self.bad_line is None and not self.torn


def verify(lines: Iterable[bytes], key: bytes) -> Verdict:
    """Check a journal line by line; stop at the first line that fails."""
    prev_line = b""
    prev_seq: int | None = None
    count = 0
    for number, line in enumerate(lines, 1):
        if not line.endswith(b"\n"):
            return Verdict(count, number, "torn last line (a write cut short)", torn=True)
        match = _MAC_SUFFIX.search(line)
        if match is None:
            return Verdict(count, number, "not a sealed journal line")
        body = line[: match.start()] + b"}"
        if not hmac.compare_digest(match.group(1).decode(), digest(key, body)):
            return Verdict(count, number, "line was altered or forged (mac mismatch)")
        try:
            event = json.loads(body)
        except ValueError:
            return Verdict(count, number, "not valid JSON")
        if event.get("prev") != digest(key, prev_line):
            return Verdict(
                count, number, "chain broken: a line before it was deleted, reordered or inserted"
            )
        seq = event.get("seq")
        if prev_seq is not None and seq != prev_seq + 1:
            return Verdict(count, number, f"seq {seq} does not follow {prev_seq}")
        prev_seq = seq
        prev_line = line
        count += 1
    return Verdict(count)
