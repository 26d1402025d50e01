"""The journal's keyed chain (pure functions).

Each line carries `prev`, the HMAC-SHA256 of the previous line's bytes, and
ends with `mac`, the HMAC of the line's own bytes up to that field. `prev`
catches a deleted, reordered or inserted line; `mac` catches an edit to any
line, the last one included. Neither can be recomputed without the key.
Lines cut off the end leave a shorter chain that holds: only a head kept
elsewhere (the seq and HMAC of the last line) shows them missing.
"""

import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

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


def is_recovery(event: dict[str, Any]) -> bool:
    """A `journal` `recovered` event: the one kind of line that may declare a seq gap."""
    return event.get("event") == "journal" and event.get("action") == "recovered"


def seq_range(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seqs {first}-{last}"


@dataclass(frozen=True)
class Recovery:
    """A sealed recovery event found in the journal."""

    line: int
    seq: int
    event: dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    lines: int  # complete lines read (that verify)
    bad_line: int | None = None  # 1-based number of the first line that fails
    reason: str = ""
    torn: bool = False  # the last line has no newline: a write cut short
    last_seq: int = 0  # of the last line that verifies
    recoveries: tuple[Recovery, ...] = ()
    head_line: int | None = None  # the line that is the head checked (0: the empty start)

    @property
    def ok(self) -> bool:
        return self.bad_line is None and not self.torn


def verify(lines: Iterable[bytes], key: bytes, head: tuple[int, str] | None = None) -> Verdict:
    """Check a journal line by line; stop at the first line that fails.

    `seq` runs 1, 2, 3, ...; it may jump only at a sealed `journal` `recovered`
    event that declares exactly the seqs it skips (`skipped_from`, `skipped_to`).
    With `head` (seq, HMAC of that line), the journal must also hold that line.
    """
    prev_mac = digest(key, b"")
    prev_seq, count = 0, 0
    recoveries: list[Recovery] = []
    held: tuple[int, bool] | None = None  # (line, HMAC matches) of the head's seq

    def bad(number: int, reason: str, torn: bool = False) -> Verdict:
        return Verdict(count, number, reason, torn, prev_seq, tuple(recoveries))

    for number, line in enumerate(lines, 1):
        if not line.endswith(b"\n"):
            reason = "torn last line (a write cut short)"
            if head is not None and head[0] > prev_seq:
                reason += f"; the head is seq {head[0]}: {seq_range(prev_seq + 1, head[0])}"
                reason += " torn or missing"
            return bad(number, reason, torn=True)
        match = _MAC_SUFFIX.search(line)
        if match is None:
            return bad(number, "not a sealed journal line")
        body = line[: match.start()] + b"}"
        if not hmac.compare_digest(match.group(1).decode(), digest(key, body)):
            return bad(number, "line was altered or forged (mac mismatch)")
        try:
            event = json.loads(body)
        except ValueError:
            return bad(number, "not valid JSON")
        if event.get("prev") != prev_mac:
            return bad(number, "chain broken: a line before it was deleted, reordered or inserted")
        seq = event.get("seq")
        if (problem := _seq_problem(event, seq, prev_seq)) is not None:
            return bad(number, problem)
        if is_recovery(event):
            recoveries.append(Recovery(number, seq, event))
        prev_mac = digest(key, line)
        if head is not None and seq == head[0]:
            held = (number, hmac.compare_digest(prev_mac, head[1]))
        prev_seq = seq
        count += 1
    verdict = Verdict(count, last_seq=prev_seq, recoveries=tuple(recoveries))
    return verdict if head is None else _check_head(verdict, head, held, digest(key, b""))


def _seq_problem(event: dict[str, Any], seq: object, prev_seq: int) -> str | None:
    """Why `seq` may not follow `prev_seq` here, or None if it may."""
    if type(seq) is not int or seq <= prev_seq:
        return f"seq {seq} does not follow {prev_seq}"
    gap = (prev_seq + 1, seq - 1) if seq != prev_seq + 1 else (None, None)
    declared = (None, None)
    if is_recovery(event):
        declared = (event.get("skipped_from"), event.get("skipped_to"))
    if declared == gap:
        return None
    if gap == (None, None):
        return f"recovery declares seqs {declared} skipped, but seq {seq} follows {prev_seq}"
    return f"seq {seq} does not follow {prev_seq}: no recovery declares the gap"


def _check_head(
    verdict: Verdict, head: tuple[int, str], held: tuple[int, bool] | None, empty_mac: str
) -> Verdict:
    """The whole chain verifies; does it hold `head`, and how many lines came after it?"""
    seq, mac = head

    def bad(line: int, reason: str) -> Verdict:
        return replace(verdict, bad_line=line, reason=reason)

    if seq == 0:
        if hmac.compare_digest(mac, empty_mac):
            return replace(verdict, head_line=0)
        return bad(1, "the head 0:... is not the start of a journal under this key")
    if held is not None:
        line, matches = held
        if matches:
            return replace(verdict, head_line=line)
        before = [r.line for r in verdict.recoveries if r.line <= line]
        after = f", after the recovery at line {before[-1]}" if before else ""
        return bad(
            line,
            f"seq {seq} is not the head you hold, its HMAC differs: the journal was"
            f" rewritten or replaced at or before this line{after}",
        )
    for r in verdict.recoveries:
        first, last = r.event.get("skipped_from"), r.event.get("skipped_to")
        if isinstance(first, int) and isinstance(last, int) and first <= seq <= last:
            return bad(
                r.line,
                f"the head (seq {seq}) is not in the journal: this recovery skipped"
                f" {seq_range(first, last)} ({r.event.get('reason')})",
            )
    return bad(
        verdict.lines + 1,
        f"the journal ends at seq {verdict.last_seq}, but the head is seq {seq}:"
        f" {seq_range(verdict.last_seq + 1, seq)} missing (cut from the end, or an older copy)",
    )
