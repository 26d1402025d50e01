"""The logs directory: where each file lives and with which mode (docs/CONTRACT.md)."""

import os
from dataclasses import dataclass
from pathlib import Path

from agentlog.errors import UserError

JOURNAL_MODE = 0o640
SECRET_MODE = 0o600
PUBLIC_MODE = 0o644


class LogsDirError(UserError):
    """The logs directory cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class LogsDir:
    root: Path

    @property
    def journal(self) -> Path:
        return self.root / "requests.jsonl"

    @property
    def torn(self) -> Path:
        return self.root / "requests.jsonl.torn"

    @property
    def journal_key(self) -> Path:
        return self.root / "journal.key"

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def keylog(self) -> Path:
        return self.root / "keys.log"

    @property
    def bodies(self) -> Path:
        return self.root / "bodies"

    @property
    def mitmproxy_confdir(self) -> Path:
        return self.root / ".mitmproxy"

    def existing_journal(self) -> Path:
        """The journal, for commands that read it; a clear error when there is none."""
        if not self.journal.exists():
            raise UserError(f"no journal at {self.journal}")
        return self.journal

    def prepare(self) -> None:
        """Create the directory tree, or say in one line why it can't be used."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.bodies.mkdir(mode=0o750, exist_ok=True)
            self.mitmproxy_confdir.mkdir(mode=0o700, exist_ok=True)
            os.chmod(self.mitmproxy_confdir, 0o700)
            probe = self.root / ".write-probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise LogsDirError(f"logs directory {self.root} is not writable: {e.strerror}") from e


def create_secret_file(path: Path, data: bytes, mode: int = SECRET_MODE) -> None:
    """Write a new file that is never, even briefly, readable beyond `mode`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def read_or_create_key(path: Path) -> bytes:
    """A 32-byte key stored as hex; created (0600) on first use."""
    if not path.exists():
        create_secret_file(path, os.urandom(32).hex().encode() + b"\n")
    return bytes.fromhex(path.read_text().strip())
