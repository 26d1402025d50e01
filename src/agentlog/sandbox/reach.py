"""Keeping agentlog's files out of the agent user's reach.

The logs directory is made root's and 0700, so nothing in it (journal,
bodies, captures, keys.log, the CA key, the UI token) can be read, listed,
changed or deleted by the agent's user, whatever the files' own modes. A
journal key kept elsewhere (--journal-key) must not be readable by that user
either. What a directory's mode cannot prevent is a rename higher up: if the
user can write a directory on the path to the logs, they can move the logs
directory aside (its records intact) and put another in its place; that gets
a warning.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agentlog.errors import ConfigError
from agentlog.sandbox.agent import AgentUser

LOGS_MODE = 0o700


def may(st: os.stat_result, user: AgentUser, groups: list[int], bits: int) -> bool:
    """Whether `user` has all of `bits` (r=4, w=2, x=1) on a file with this stat (pure)."""
    if user.is_root:
        return True
    if st.st_uid == user.uid:
        granted = st.st_mode >> 6
    elif st.st_gid in groups:
        granted = st.st_mode >> 3
    else:
        granted = st.st_mode
    return granted & bits == bits


def protect_logs(root: Path) -> None:
    """Make the logs directory root's and LOGS_MODE; refuse one someone else owns."""
    root.mkdir(parents=True, exist_ok=True)
    st = root.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"--logs {root} is not a directory")
    if st.st_uid != os.geteuid():
        raise ConfigError(
            f"--logs {root} belongs to uid {st.st_uid}: agentlog run needs a logs directory "
            "only root owns (choose another, or chown it to root)"
        )
    os.chmod(root, LOGS_MODE)


def check_key(key: Path | None, user: AgentUser) -> None:
    """A journal key outside the logs directory must be secret from the agent too."""
    if key is None or not key.exists() or user.is_root:
        return
    if may(key.stat(), user, user.groups, 4):
        raise ConfigError(f"--journal-key {key} is readable by {user.name}, who runs the command")


def movable_by(root: Path, user: AgentUser) -> Path | None:
    """The highest directory on the way to `root` that `user` could rename, or None."""
    groups = user.groups
    path = root.resolve()
    for child in [*reversed(path.parents), path][1:]:
        parent = child.parent.stat()
        if not may(parent, user, groups, 3):  # write and search
            continue
        sticky = parent.st_mode & stat.S_ISVTX
        if not sticky or parent.st_uid == user.uid or child.lstat().st_uid == user.uid:
            return child
    return None
