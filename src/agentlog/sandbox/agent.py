"""Who runs the agent's command, with what environment, and how it is started.

The command runs inside the sandbox's namespace (`ip netns exec`, which also
gives it the sandbox's resolv.conf) through `setpriv`: as an unprivileged
user with their supplementary groups, no capabilities (none inherited, none
in the bounding set), no new privileges (set-user-ID programs do not raise
them), and killed if agentlog dies. Its environment points every usual
variable at the proxy and at a bundle of the system's CAs plus agentlog's.

Root is refused unless asked for (`--as-root`); it then keeps most of its
powers, minus those that would undo the network sandbox at once.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agentlog.errors import ConfigError

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")
NO_PROXY = "localhost,127.0.0.1,::1"  # the namespace's own loopback, never agentlog's
BUNDLE_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO")
# Dropped from a root agent: entering other namespaces, changing the network or the
# firewall, tracing or loading code into the kernel or into other processes.
ROOT_DROPS = ("sys_admin", "net_admin", "sys_module", "sys_ptrace", "sys_rawio", "bpf")


@dataclass(frozen=True)
class AgentUser:
    name: str
    uid: int
    gid: int
    home: str
    shell: str

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    @property
    def groups(self) -> list[int]:
        return os.getgrouplist(self.name, self.gid)


def _lookup(user: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"--user {user}: no such user") from None


def agent_user(user: str | None, as_root: bool, environ: Mapping[str, str]) -> AgentUser:
    """--user, else the user sudo was run by; root only with --as-root."""
    chosen = user or environ.get("SUDO_USER") or ("root" if as_root else None)
    if chosen is None:
        raise ConfigError(
            "say which unprivileged user runs the command (--user USER), "
            "or --as-root to run it as root"
        )
    entry = _lookup(chosen)
    found = AgentUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_shell)
    if found.is_root and not as_root:
        raise ConfigError(f"--user {chosen} is root: add --as-root if that is really meant")
    return found


def agent_environment(
    base: Mapping[str, str], user: AgentUser, proxy_url: str, ca_file: Path, bundle: Path
) -> dict[str, str]:
    """The command's environment: the caller's, as `user`, pointed at agentlog (pure)."""
    env = {k: v for k, v in base.items() if not k.startswith("AGENTLOG_")}
    env.pop("ALL_PROXY", None)
    env.pop("all_proxy", None)
    env.update(HOME=user.home, USER=user.name, LOGNAME=user.name)
    env.update(dict.fromkeys(PROXY_VARIABLES, proxy_url))
    env.update(NO_PROXY=NO_PROXY, no_proxy=NO_PROXY)
    env.update(dict.fromkeys(BUNDLE_VARIABLES, str(bundle)))
    env["NODE_EXTRA_CA_CERTS"] = str(ca_file)
    return env


def agent_command(namespace: str, user: AgentUser, command: list[str]) -> list[str]:
    """`command` in the namespace, as `user`, with no way to gain privileges (pure)."""
    if user.is_root:
        drops = ",".join(f"-{cap}" for cap in ROOT_DROPS)
        privileges = ["--inh-caps", drops, "--bounding-set", drops]
    else:
        privileges = [
            *("--reuid", str(user.uid), "--regid", str(user.gid), "--init-groups"),
            *("--inh-caps=-all", "--bounding-set=-all"),
        ]
    setpriv = ["setpriv", *privileges, "--no-new-privs", "--pdeathsig", "KILL", "--"]
    return ["ip", "netns", "exec", namespace, *setpriv, *command]
