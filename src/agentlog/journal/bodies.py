"""Captured bodies: redacted, content-addressed files under bodies/."""

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from mitmproxy.net import encoding

from agentlog.logsdir import JOURNAL_MODE, LogsDir
from agentlog.redact import Redactor


@dataclass(frozen=True)
class Body:
    """A body as captured on the wire (possibly cut at the cap)."""

    data: bytes
    content_type: str = ""
    content_encoding: str = ""
    # The exchange's secrets so far. Shared by the bodies of one exchange and
    # touched only by the journal writer thread, which adds what it finds.
    secrets: set[str] = field(default_factory=set)


def decoded(body: Body) -> bytes:
    """Undo Content-Encoding so redaction sees the real text; keep raw if it won't decode."""
    if not body.content_encoding or body.content_encoding == "identity":
        return body.data
    try:
        return encoding.decode(body.data, body.content_encoding)
    except ValueError:
        return body.data


def store(root: Path, body: Body, redactor: Redactor, stored: set[str]) -> str:
    """Redact and store `body`; return its path relative to the logs directory.

    `stored` remembers names already on disk, to spare a stat() per repeat."""
    clean = redactor.body(decoded(body), body.content_type, body.secrets)
    name = hashlib.sha256(clean).hexdigest()
    ref = LogsDir.body_ref(name)
    path = root / ref
    directory = path.parent
    if name not in stored and not path.exists():
        directory.mkdir(exist_ok=True)
        tmp = directory / f".{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, JOURNAL_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(clean)
        os.replace(tmp, path)
    if len(stored) < 100_000:
        stored.add(name)
    return ref
