"""The logs directory: where each file lives and with which mode (docs/CONTRACT.md).

Every name in it is made here, and names read back from the journal (body
refs, capture files) are checked here before anything is opened.
"""

import os
import re
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from agentlog.errors import UserError

JOURNAL_MODE = 0o640
SECRET_MODE = 0o600
PUBLIC_MODE = 0o644

# Body references are written by the proxy, but the journal is read as data:
# only a well-formed bodies/xx/<sha256> is ever opened.
_BODY_REF = re.compile(r"bodies/([0-9a-f]{2})/\1[0-9a-f]{62}")
_CAPTURE_GLOB = "capture_*.pcap"
_CAPTURE_NAME = re.compile(r"capture_(\d{8}_\d{6})(?:_(\d+))?\.pcap$")


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

    @property
    def mitmproxy_ca(self) -> Path:
        """Our CA in the file mitmproxy loads it from (key and certificate)."""
        return self.mitmproxy_confdir / "mitmproxy-ca.pem"

    @property
    def upstream_trust(self) -> Path:
        """The CA bundle upstream certificates are checked against."""
        return self.mitmproxy_confdir / "upstream-trust.pem"

    @property
    def ui_token(self) -> Path:
        """The web UI's access token (SECRET_MODE)."""
        return self.root / "ui-token"

    @property
    def index_db(self) -> Path:
        """The web UI's SQLite index of the journal (JOURNAL_MODE: redacted, like it)."""
        return self.root / "index.db"

    # -- bodies: bodies/xx/<sha256 of the stored bytes> ----------------------

    @staticmethod
    def body_ref(sha256: str) -> str:
        """How the journal names a stored body: its path relative to the root."""
        return f"bodies/{sha256[:2]}/{sha256}"

    @staticmethod
    def is_body_ref(ref: object) -> bool:
        """`ref` is a well-formed body ref: bodies/xx/<sha256>, nothing else."""
        return isinstance(ref, str) and _BODY_REF.fullmatch(ref) is not None

    def body_file(self, ref: object) -> Path | None:
        """The file a body ref names, or None when `ref` is not a well-formed ref."""
        return self.root / ref if isinstance(ref, str) and self.is_body_ref(ref) else None

    # -- captures: capture_YYYYMMDD_HHMMSS[_N].pcap, UTC of the first packet --

    @staticmethod
    def capture_name(first_packet: float, taken: Collection[str]) -> str:
        """A new capture file's name, not one of `taken`."""
        stem = "capture_" + time.strftime("%Y%m%d_%H%M%S", time.gmtime(first_packet))
        name, n = f"{stem}.pcap", 0
        while name in taken:
            n += 1
            name = f"{stem}_{n}.pcap"
        return name

    @staticmethod
    def is_capture_name(name: object) -> bool:
        """`name` is a capture file's name (no directory part)."""
        return isinstance(name, str) and _CAPTURE_NAME.fullmatch(name) is not None

    @staticmethod
    def capture_order(name: str) -> tuple[str, int]:
        """Sort key of capture file names: the order they were opened in."""
        m = _CAPTURE_NAME.search(name)
        return (m.group(1), int(m.group(2) or 0)) if m else ("", 0)

    @staticmethod
    def capture_id(name: str) -> str | None:
        """A capture file's id (its time stamp and number): what the UI names it by."""
        m = _CAPTURE_NAME.fullmatch(name)
        return name.removeprefix("capture_").removesuffix(".pcap") if m else None

    def capture_by_id(self, id: str) -> Path | None:
        """The capture file with this id, if there is one; never a path from outside."""
        return next((p for p in self.capture_files() if self.capture_id(p.name) == id), None)

    def capture_files(self) -> list[Path]:
        """The capture files there are, oldest first."""
        return sorted(self.root.glob(_CAPTURE_GLOB), key=lambda p: self.capture_order(p.name))

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
