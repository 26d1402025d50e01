"""The journal head as the user keeps it: `SEQ:HMAC`, typed or in a head file.

The head is the seq of the last line written and the HMAC (journal key) of
that whole line, which is what the next line's `prev` will be. Whoever can
rewrite the logs directory can cut lines off the end of the journal and
leave a shorter chain that still verifies; a head kept elsewhere says where
the journal really ended. The proxy prints it, and with `--head-file` keeps
a file updated with it; `agentlog verify --head` / `--head-file` check it.
"""

import os
import re
import threading
from pathlib import Path

from agentlog.errors import ConfigError

Head = tuple[int, str]  # (seq, HMAC of that line)

# `12:ab..` as verify takes it, or `seq=12 hmac=ab..` as the proxy prints it.
_HEAD = re.compile(r"\s*(?:seq=)?(\d{1,15})(?::|\s+hmac=)([0-9a-f]{64})\s*")


def parse_head(text: str) -> Head:
    """`SEQ:HMAC` (or the proxy's `seq=SEQ hmac=HMAC`) -> (seq, HMAC)."""
    m = _HEAD.fullmatch(text)
    if m is None:
        raise ConfigError(f"bad head {text[:100]!r}: expected SEQ:HMAC as the proxy prints it")
    return int(m.group(1)), m.group(2)


def format_head(head: Head) -> str:
    return f"{head[0]}:{head[1]}"


class HeadFile:
    """A file holding the head, replaced whole (write, fsync, rename): a reader never
    sees half of one. It only moves forward: an older head is never written over a
    newer one, whichever thread writes."""

    def __init__(self, path: Path, logs_root: Path | None = None) -> None:
        if logs_root is not None and path.resolve().is_relative_to(logs_root.resolve()):
            raise ConfigError(
                f"--head-file {path} is inside the logs directory: whoever can cut the"
                " journal could rewrite it too; keep it elsewhere"
            )
        self.path = path
        self._lock = threading.Lock()
        self._written = -1  # the seq last written

    def read(self) -> Head | None:
        """The head the file holds; None if there is no file yet."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read head file {self.path}: {e}") from e
        try:
            return parse_head(text)
        except ConfigError:
            raise ConfigError(f"head file {self.path} does not hold SEQ:HMAC") from None

    def write(self, head: Head) -> None:
        """Replace the file with `head` unless a newer one is there; OSError if it cannot."""
        with self._lock:
            if head[0] < self._written:
                return
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, format_head(head).encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            self._written = head[0]
