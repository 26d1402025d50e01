"""Captured bodies: decoded (bounded), redacted, content-addressed files under bodies/."""

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from agentlog.journal.decoding import decode
from agentlog.logsdir import JOURNAL_MODE, LogsDir
from agentlog.redact import Redactor

# --body-cap's default; the journal writer passes the configured cap.
DEFAULT_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class Body:
    """A body as captured on the wire (possibly cut at the cap)."""

    data: bytes
    content_type: str = ""
    content_encoding: str = ""
    # The exchange's secrets so far. Shared by the bodies of one exchange and
    # touched by one thread at a time (the journal writer keeps an exchange's
    # bodies in order), which adds what it finds.
    secrets: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Stored:
    """What became of a body: a file, or the reason there is none."""

    ref: str | None  # bodies/xx/<sha256>, relative to the logs directory
    truncated: bool  # the file holds a prefix of the (decoded) body
    undecodable: str | None = None  # set when ref is None: why it was not stored


def store(
    root: Path,
    body: Body,
    redactor: Redactor,
    stored: set[str],
    *,
    limit: int = DEFAULT_LIMIT,
    complete: bool = True,
) -> Stored:
    """Decode (at most `limit` bytes of output), redact and store `body`.

    `complete` is False when `body.data` was cut by the cap. A body that
    cannot be decoded is not stored at all: its raw bytes would hide secrets
    from the redactor. `stored` remembers names already on disk, to spare a
    stat() per repeat."""
    decoded = decode(body.data, body.content_encoding, limit, complete)
    if decoded.data is None:
        return Stored(None, not complete, decoded.problem)
    clean = redactor.body(decoded.data, body.content_type, body.secrets)
    return Stored(write(root, clean, stored), decoded.truncated)


def write(root: Path, clean: bytes, stored: set[str]) -> str:
    """Write redacted bytes under their SHA-256 (once); return the ref."""
    name = hashlib.sha256(clean).hexdigest()
    ref = LogsDir.body_ref(name)
    if name in stored:  # a repeat (the same small reply, say): no path work at all
        return ref
    path = root / ref
    directory = path.parent
    if not path.exists():
        directory.mkdir(exist_ok=True)
        tmp = directory / f".{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, JOURNAL_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(clean)
        os.replace(tmp, path)
    if len(stored) < 100_000:
        stored.add(name)
    return ref
