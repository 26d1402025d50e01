"""The files a sandbox needs outside the logs directory, and their removal.

- `/run/agentlog/<name>/` (0755, root's): `ca.crt` (agentlog's CA, copied: the
  logs directory is out of the agent's reach) and `ca-bundle.pem` (the
  system's CAs plus ours), both 0644; and `proxy.log` (0600), where the
  proxy's messages go while the command owns the terminal.
- `/etc/netns/<name>/resolv.conf`: the namespace's resolver is agentlog's
  DNS listener (`ip netns exec` mounts it over /etc/resolv.conf).

Both paths carry the sandbox's name, and so its owner's pid: `leftovers`
finds them after a killed run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import stat
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from agentlog.errors import UserError

RUN_ROOT = Path("/run/agentlog") if Path("/run").is_dir() else Path("/tmp/agentlog")
NETNS_ETC = Path("/etc/netns")
_SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


def system_ca_bundle() -> bytes:
    """The system's trusted CAs as PEM (empty if this machine has none we can find)."""
    candidates = [ssl.get_default_verify_paths().cafile, *_SYSTEM_BUNDLES]
    for path in candidates:
        if path and Path(path).is_file():
            return Path(path).read_bytes()
    return b""


@dataclass(frozen=True)
class SandboxFiles:
    name: str

    @property
    def directory(self) -> Path:
        return RUN_ROOT / self.name

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def bundle(self) -> Path:
        return self.directory / "ca-bundle.pem"

    @property
    def proxy_log(self) -> Path:
        return self.directory / "proxy.log"

    @property
    def etc(self) -> Path:
        return NETNS_ETC / self.name

    def create(self, resolver: IPv4Address) -> None:
        RUN_ROOT.mkdir(mode=0o755, exist_ok=True)
        root = RUN_ROOT.lstat()
        if not stat.S_ISDIR(root.st_mode) or root.st_uid != os.geteuid() or root.st_mode & 0o022:
            raise UserError(f"{RUN_ROOT} is not a directory only root can write: remove it")
        self.directory.mkdir(mode=0o755)
        os.chmod(self.directory, 0o755)
        for attempt in range(2):  # a run cleaning up may remove an empty /etc/netns meanwhile
            try:
                NETNS_ETC.mkdir(mode=0o755, exist_ok=True)
                self.etc.mkdir(mode=0o755, exist_ok=True)
                break
            except FileNotFoundError:
                if attempt:
                    raise
        _public(self.etc / "resolv.conf", f"nameserver {resolver}\n".encode())

    def add_ca(self, ca_cert: Path) -> None:
        """Our CA for the agent, alone and in a bundle with the system's."""
        ours = ca_cert.read_bytes()
        _public(self.ca_file, ours)
        _public(self.bundle, system_ca_bundle().rstrip(b"\n") + b"\n" + ours)

    def remove(self) -> None:
        """Remove both directories (and their parents, if that leaves them empty)."""
        for path in (self.directory, self.etc):
            shutil.rmtree(path, ignore_errors=True)
        for parent in (RUN_ROOT, NETNS_ETC):
            with contextlib.suppress(OSError):
                parent.rmdir()


def _public(path: Path, data: bytes) -> None:
    """A file anyone may read and only root may change."""
    path.write_bytes(data)
    os.chmod(path, 0o644)
