"""The real Claude Code CLI for the end-to-end tests: the pinned version, installed once.

``claude_binary()`` runs ``npm install @anthropic-ai/claude-code@VERSION`` from the
npm registry into a cache directory the first time and returns the path of the
native ``claude`` executable, which the package ships in a per-platform optional
dependency (``@anthropic-ai/claude-code-linux-x64`` ...; the package's own
``install.cjs`` picks it the same way and copies it over its placeholder
``bin/claude.exe``, so install scripts are not needed and not run).

The cache is ``$AGENTLOG_TEST_CACHE`` or ``/var/cache/agentlog-tests``: not under
root's home, which is closed to the unprivileged user the agent runs as. Each
version is installed into a temporary directory and renamed into place, so
concurrent test runs (other worktrees) never see half an install.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

VERSION = "2.1.332"  # the pin; the Docker agent image pins the same
PACKAGE = "@anthropic-ai/claude-code"
CACHE = Path(os.environ.get("AGENTLOG_TEST_CACHE", "/var/cache/agentlog-tests"))
_INSTALL_TIMEOUT = 600


def platform_package() -> str:
    """The optional dependency holding this machine's binary (install.cjs's PLATFORMS)."""
    system = platform.system().lower()
    cpu = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    musl = system == "linux" and platform.libc_ver()[0] != "glibc"
    return f"{PACKAGE}-{system}-{cpu}{'-musl' if musl else ''}"


def _binary_in(prefix: Path) -> Path:
    return prefix / "node_modules" / platform_package() / "claude"


def _open_to_all(path: Path) -> None:
    """Every directory from / down to `path` can be entered, and `path` run, by anyone."""
    for part in [*reversed(path.parents), path]:
        mode = part.stat().st_mode
        wanted = 0o555 if part == path else 0o111
        if mode & wanted != wanted:
            raise RuntimeError(
                f"{part} (mode {oct(mode & 0o777)}) keeps the agent's user from running "
                f"{path}: set AGENTLOG_TEST_CACHE to a directory anyone may enter"
            )


def claude_binary(cache: Path = CACHE, version: str = VERSION) -> Path:
    """The native `claude` of `version`, installed into `cache` if it is not there yet."""
    prefix = cache / f"claude-code-{version}"
    binary = _binary_in(prefix)
    if not binary.exists():
        cache.mkdir(mode=0o755, parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".claude-code-{version}-", dir=cache))
        try:
            subprocess.run(
                [
                    *("npm", "install", "--prefix", str(staging), "--ignore-scripts"),
                    *("--no-audit", "--no-fund", "--loglevel", "error"),
                    f"{PACKAGE}@{version}",
                ],
                check=True,
                timeout=_INSTALL_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
            if not _binary_in(staging).exists():
                raise RuntimeError(f"npm installed no {platform_package()} for {version}")
            staging.chmod(0o755)
            try:
                staging.rename(prefix)
            except OSError:  # another run installed it meanwhile
                if not binary.exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    _open_to_all(binary)
    return binary
