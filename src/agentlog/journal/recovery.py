"""What the journal writer does at start with the journal it finds (pure).

A crash mid-write leaves half a line at the end; so does someone who cut the
journal and wants it to look like a crash. Either way the writer moves the
half line aside and writes a sealed `journal` `recovered` event, and `seq`
jumps past anything that may have been written: past the torn line's own seq
(read from it if it got that far, else the one after the last whole line)
and past the head file's seq. The event declares the seqs it skips; verify
accepts a gap in `seq` nowhere else.

A journal that ends before the head file's head, does not hold it, or is
empty where one was kept is not a crash: a crash never takes whole lines
with it. The proxy refuses to start on it unless told to go on, and then
records the same way what was lost.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentlog.errors import UserError
from agentlog.journal.chain import seq_range

# The line's first fields, as the writer orders them, up to `seq`. Anchored at the
# start: agent-sent text further on cannot pose as the seq.
_TORN_SEQ = re.compile(rb'\{(?:"(?:v|event|id)":(?:\d+|"[^"\\]*"),)*"seq":([1-9]\d{0,14})[,}]')


class JournalCutError(UserError):
    """The journal lost whole lines: not something to recover from silently."""


def torn_seq(torn: bytes, last_seq: int) -> int | None:
    """The seq a torn line was written with, if it got that far (and is past `last_seq`)."""
    m = _TORN_SEQ.match(torn)
    seq = int(m.group(1)) if m else None
    return seq if seq is not None and seq > last_seq else None


@dataclass(frozen=True)
class Found:
    """The journal as the writer opened it."""

    last_seq: int  # of the last whole line; 0 if there is none
    torn: bool = False  # an incomplete last line follows it
    torn_seq: int | None = None  # that line's seq, if readable
    existed: bool = False  # a journal was kept here before (its key was there)
    known_head: tuple[int, str] | None = None  # what the head file says
    holds_known_head: bool = True  # the whole lines include that head's line


@dataclass(frozen=True)
class Plan:
    problems: tuple[str, ...] = ()  # empty: nothing to recover
    cut: bool = False  # whole lines were lost: start only if told to
    skipped: tuple[int, int] | None = None  # the seqs no line will have

    @property
    def next_seq(self) -> int | None:
        return None if self.skipped is None else self.skipped[1] + 1


def plan(found: Found) -> Plan:
    """What to record, which seqs to skip, and whether it is a cut rather than a crash."""
    last = found.last_seq
    problems: list[str] = []
    cut = False
    skip_to = last  # seqs up to this one may have been written
    if found.torn:
        problems.append("torn last line (a write cut short)")
        skip_to = max(last + 1, found.torn_seq or 0)
    if found.known_head is not None and not found.holds_known_head:
        cut = True
        seq = found.known_head[0]
        if seq > last:
            ends = "is empty" if last == 0 else f"ends at seq {last}"
            problems.append(
                f"the journal {ends} but the head file says seq {seq}:"
                f" {seq_range(last + 1, seq)} cut, or the journal replaced by an older copy"
            )
            skip_to = max(skip_to, seq)
        else:
            problems.append(
                f"the journal's line with seq {seq} is not the head file's:"
                " the journal was rewritten or replaced"
            )
    elif last == 0 and not found.torn and found.existed:
        cut = True
        problems.append("the journal is empty or missing, but its key was there: one was kept")
    skipped = (last + 1, skip_to) if skip_to > last else None
    return Plan(tuple(problems), cut, skipped)


def describe(event: Mapping[str, Any]) -> str:
    """One line on a `recovered` event: what was found, moved aside and skipped."""
    text = f"journal recovered: {event.get('reason')}"
    if event.get("moved_bytes"):
        text += (
            f"; {event['moved_bytes']} bytes moved to {event.get('moved_to')}"
            f" (sha256 {event.get('moved_sha256')})"
        )
    first, last = event.get("skipped_from"), event.get("skipped_to")
    if isinstance(first, int) and isinstance(last, int):
        text += f"; {seq_range(first, last)} skipped, never to be used"
    return text
