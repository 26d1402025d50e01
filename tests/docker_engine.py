"""A real Docker engine for the Docker tests, without a registry, leaving the host as it was.

* ``install()``: Debian's docker.io (engine 20.10), docker-compose (1.29) and
  debootstrap, with apt, when missing. The package's own service is never
  started here (policy-rc.d); the tests start their own dockerd.
* ``Engine``: a dockerd with its own data root (kept under the cache, so the
  base image and the build cache survive between runs), exec root, pidfile and
  socket, no docker0 (``--bridge=none``) and no IP forwarding
  (``--ip-forward=false``: the containers talk over their networks' bridges).
  One engine at a time on the machine (a lock). On exit it is stopped and what
  it changed on the host is put back: the iptables rules and chains it added
  (nftables tables it created are removed whole), the FORWARD policy, the
  sysctls it set, the bridges and veths it left. What it will put back is also
  saved in the cache, so that a run killed with SIGKILL is undone by the next.
* ``base_image()``: the image the Dockerfiles name, made by ``debootstrap
  --variant=minbase trixie`` from the machine's Debian mirror, slimmed, and
  imported under that exact tag; the tarball is cached.
* ``feed_context()``: what the images' offline builds install: the proxy's
  wheels (``pip download`` for CPython 3.13, manylinux) into docker/wheels and
  Claude Code's two tarballs (``npm pack``) into docker/npm, both cached.
* ``build_images()``: ``docker build --network host`` (apt inside reaches the
  mirror as the host does; nothing reaches PyPI or npm) with the build args
  that say so.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("AGENTLOG_TEST_CACHE", "/var/cache/agentlog-tests")) / "docker"
DOCKER = "/usr/bin/docker"  # docker.io's client speaks the engine's API (a newer one refuses)
COMPOSE = "/usr/bin/docker-compose"
DOCKERD = "/usr/sbin/dockerd"
PROXY_IMAGE = "agentlog-proxy:0.1.0"
AGENT_IMAGE = "agentlog-agent:0.1.0"
EXEC_ROOT = Path("/run/agentlog-docker")  # short: containerd's socket paths live under it
SOCKET = EXEC_ROOT / "docker.sock"
HOST_BEFORE = CACHE / "host-before.json"  # the host before the running engine, for restore
SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
)
TABLE_TOOLS = ("iptables", "ip6tables")
IPTABLES_TABLES = {
    f"table {family} {name}" for family in ("ip", "ip6") for name in ("filter", "nat")
}
DOCKER_LINKS = ("br-", "veth", "docker")
PLATFORM_TAGS = [
    f"{tag}_x86_64"
    for tag in (
        *(f"manylinux_2_{minor}" for minor in (41, 39, 36, 34, 31, 28, 26, 24, 17, 12, 5)),
        *("manylinux2014", "manylinux2010", "manylinux1", "linux"),
    )
]


def run(*command: str | Path, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run a command; its output in the error if it fails."""
    done = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=timeout, **kwargs
    )
    if done.returncode != 0:
        shown = " ".join(shlex.quote(str(c)) for c in command)[:300]
        raise RuntimeError(
            f"{shown}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


def install() -> None:
    needed = {
        "docker.io": DOCKERD,
        "docker-compose": COMPOSE,
        "debootstrap": "/usr/sbin/debootstrap",
    }
    missing = [package for package, path in needed.items() if not Path(path).exists()]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run("apt-get", "update", "-q", env=env)
        run("apt-get", "install", "-y", "-q", "--no-install-recommends", *missing, env=env)


# -- the host, as dockerd changes it --


@dataclass
class HostState:
    rules: dict[str, str]  # tool -> `TOOL-save` output
    tables: set[str]  # `nft list tables` lines
    sysctls: dict[str, str]
    links: set[str]
    chains: dict[str, set[str]]  # iptables-nft's tables -> their chains

    @classmethod
    def read(cls) -> HostState:
        rules = {tool: _save(tool) for tool in TABLE_TOOLS if shutil.which(f"{tool}-save")}
        tables = set(run("nft", "list", "tables").stdout.splitlines())
        sysctls = {}
        for name in SYSCTLS:
            path = Path("/proc/sys") / name.replace(".", "/")
            if path.exists():
                sysctls[name] = path.read_text().strip()
        chains = {t: _chains(t) for t in tables & IPTABLES_TABLES}
        return cls(rules, tables, sysctls, _links(), chains)

    def save(self, path: Path) -> None:
        fields = {
            "rules": self.rules,
            "tables": sorted(self.tables),
            "sysctls": self.sysctls,
            "links": sorted(self.links),
            "chains": {table: sorted(chains) for table, chains in self.chains.items()},
        }
        path.write_text(json.dumps(fields))

    @classmethod
    def load(cls, path: Path) -> HostState:
        fields = json.loads(path.read_text())
        chains = {table: set(names) for table, names in fields["chains"].items()}
        return cls(
            fields["rules"], set(fields["tables"]), fields["sysctls"], set(fields["links"]), chains
        )

    def restore(self) -> None:
        """Undo what was added since this reading (only that: other runs' rules stay)."""
        for tool, before in self.rules.items():
            _restore_rules(tool, before)
        for table, chains in self.chains.items():  # the base chains iptables-nft added
            for chain in _chains(table) - chains:
                if _empty(f"{table} {chain}", "chain"):
                    subprocess.run(["nft", "delete", "chain", *table.split()[1:], chain])
        for line in set(run("nft", "list", "tables").stdout.splitlines()) - self.tables:
            if line in IPTABLES_TABLES and _empty(line):  # iptables-nft made it for dockerd
                subprocess.run(["nft", "delete", *line.split()], check=False)
        for name, value in self.sysctls.items():
            path = Path("/proc/sys") / name.replace(".", "/")
            if path.read_text().strip() != value:
                path.write_text(value)
        for link in _links() - self.links:
            if link.startswith(DOCKER_LINKS):  # other runs' sandboxes are not ours
                subprocess.run(["ip", "link", "delete", link], check=False, capture_output=True)


def _chains(table_line: str) -> set[str]:
    listed = run("nft", "list", *table_line.split()).stdout
    return set(re.findall(r"^\tchain (\S+) \{", listed, re.MULTILINE))


def _empty(what: str, kind: str = "table") -> bool:
    """An nftables table or chain holding no rule (only the empty chains iptables-nft makes)."""
    listed = run("nft", "list", kind, *what.split()[1:]).stdout
    return not any(
        line.strip() and not line.strip().startswith(("table", "chain", "type", "}", "policy"))
        for line in listed.splitlines()
    )


def _unmount_under(root: Path) -> None:
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _save(tool: str) -> str:
    return run(f"{tool}-save").stdout


def _links() -> set[str]:
    out = run("ip", "-o", "link").stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def _parse_save(text: str) -> dict[str, tuple[dict[str, str], list[str]]]:
    """iptables-save text -> table -> ({chain: policy}, [rule lines])."""
    tables: dict[str, tuple[dict[str, str], list[str]]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:], ({}, []))
        elif current is not None and line.startswith(":"):
            name, policy = line[1:].split()[:2]
            current[0][name] = policy
        elif current is not None and line.startswith("-A "):
            current[1].append(line)
    return tables


def _restore_rules(tool: str, before_text: str) -> None:
    before, after = _parse_save(before_text), _parse_save(_save(tool))
    for table, (chains, rules) in after.items():
        old_chains, old_rules = before.get(table, ({}, []))
        remaining = list(old_rules)
        for rule in reversed(rules):
            if rule in remaining:
                remaining.remove(rule)
                continue
            spec = shlex.split(rule)[1:]  # CHAIN and the match, as iptables -D takes them
            subprocess.run([tool, "-t", table, "-D", *spec], check=False, capture_output=True)
        for chain, policy in chains.items():
            if chain not in old_chains:
                subprocess.run([tool, "-t", table, "-F", chain], check=False, capture_output=True)
                subprocess.run([tool, "-t", table, "-X", chain], check=False, capture_output=True)
            elif policy != "-" and old_chains[chain] != policy:
                run(tool, "-t", table, "-P", chain, old_chains[chain])


# -- the engine --


class Engine:
    """Our own dockerd (see the module docstring); `env` points clients at it."""

    def __init__(self, data_root: Path = CACHE / "engine") -> None:
        self.data_root = data_root
        self.log = CACHE / "dockerd.log"
        self.env = {
            **os.environ,
            "DOCKER_HOST": f"unix://{SOCKET}",
            "DOCKER_BUILDKIT": "0",
            "COMPOSE_DOCKER_CLI_BUILD": "0",
        }
        self._process: subprocess.Popen | None = None
        self._lock: int | None = None
        self._host: HostState | None = None

    def __enter__(self) -> Engine:
        install()
        CACHE.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(CACHE / "engine.lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        self._stop_stale()
        if HOST_BEFORE.exists():  # a run killed before it could restore the host
            HostState.load(HOST_BEFORE).restore()
        self._host = HostState.read()
        self._host.save(HOST_BEFORE)
        EXEC_ROOT.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.log, "w") as log:
            self._process = subprocess.Popen(
                [
                    DOCKERD,
                    *("--data-root", self.data_root, "--exec-root", EXEC_ROOT),
                    *("--pidfile", EXEC_ROOT / "dockerd.pid", "-H", f"unix://{SOCKET}"),
                    *("--bridge=none", "--ip-forward=false", "--log-level=warn"),
                    *(
                        "--containerd-namespace",
                        "agentlog",
                        "--containerd-plugins-namespace",
                        "agentlog-p",
                    ),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while self.docker("version", check=False).returncode != 0:
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.5)
        # What a killed run may have left: its containers, networks, volumes.
        for kind in ("container", "network", "volume"):
            self.docker(kind, "prune", "-f", check=False)

    def _stop_stale(self) -> None:
        """A dockerd of ours that outlived a killed test run (we hold the lock: it is stale)."""
        try:
            pid = int((EXEC_ROOT / "dockerd.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if str(self.data_root).encode() in cmdline:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        try:
            if self._process is not None:
                self._stop()
        finally:
            try:
                if self._host is not None:
                    self._host.restore()
                    HOST_BEFORE.unlink(missing_ok=True)
                shutil.rmtree(EXEC_ROOT, ignore_errors=True)
            finally:
                if self._lock is not None:
                    os.close(self._lock)

    def _stop(self) -> None:
        assert self._process is not None
        running = self.docker("ps", "-q", check=False).stdout.split()
        if running:
            self.docker("rm", "-f", *running, check=False)
        self.docker("network", "prune", "-f", check=False)
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)  # containerd and shims, if any
        _unmount_under(EXEC_ROOT)  # dockerd leaves netns/default (the host's) mounted

    def docker(self, *args: str | Path, check: bool = True, timeout: float = 600):
        command = [DOCKER, *map(str, args)]
        if check:
            return run(*command, env=self.env, timeout=timeout)
        return subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=timeout
        )


# -- the base image, the build context, the builds --


def base_tag(dockerfile: Path = ROOT / "docker" / "Dockerfile.proxy") -> str:
    found = re.search(r"^FROM\s+(\S+)", dockerfile.read_text(), re.MULTILINE)
    assert found, f"no FROM in {dockerfile}"
    return found.group(1)


SOURCES = """\
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
# As the official slim images: no documentation or translations installed.
SLIM = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""


SLIMMED = (
    *("var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb"),
    *("usr/share/man/*", "usr/share/info/*", "var/log/*.log"),
)


def base_tarball(tag: str) -> Path:
    """A trixie minbase root file system as a tarball, made once (cached)."""
    tarball = CACHE / f"{tag.replace(':', '_')}.tar"
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix=".rootfs-") as work:
        rootfs = Path(work) / "rootfs"
        run("debootstrap", "--variant=minbase", "trixie", rootfs, "http://deb.debian.org/debian")
        (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
        (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(SOURCES)
        (rootfs / "etc/dpkg/dpkg.cfg.d/docker-slim").write_text(SLIM)
        for pattern in SLIMMED:
            for path in rootfs.glob(pattern):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        for doc in (rootfs / "usr/share/doc").glob("*/*"):
            if doc.name != "copyright":
                shutil.rmtree(doc) if doc.is_dir() and not doc.is_symlink() else doc.unlink()
        staged = Path(work) / "rootfs.tar"
        run("tar", "--numeric-owner", "-C", rootfs, "-cf", staged, ".")
        staged.rename(tarball)
    return tarball


def base_image(engine: Engine) -> str:
    tag = base_tag()
    assert base_tag(ROOT / "docker" / "Dockerfile.agent") == tag
    if engine.docker("image", "inspect", tag, check=False).returncode != 0:
        engine.docker("import", base_tarball(tag), tag)
    return tag


def _cached_dir(name: str) -> Path:
    path = CACHE / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def wheels() -> Path:
    """docker/requirements.txt's wheels for CPython 3.13 on manylinux x86_64 (cached)."""
    requirements = ROOT / "docker" / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    target = _cached_dir(f"wheels-{digest}")
    if not target.exists():
        staging = Path(tempfile.mkdtemp(dir=CACHE, prefix=".wheels-"))
        try:
            platforms = [arg for tag in PLATFORM_TAGS for arg in ("--platform", tag)]
            run(
                ROOT / ".venv/bin/python", "-m", "pip", "download", "-q", "--dest", staging,
                "--only-binary=:all:", "--python-version", "3.13", "--implementation", "cp",
                *platforms, "-r", requirements,
            )  # fmt: skip
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def claude_tarballs(version: str) -> Path:
    """`npm pack` of Claude Code and of its linux-x64 native package (cached)."""
    target = _cached_dir(f"npm-claude-code-{version}")
    if not target.exists():
        staging = Path(tempfile.mkdtemp(dir=CACHE, prefix=".npm-"))
        try:
            for package in ("@anthropic-ai/claude-code", "@anthropic-ai/claude-code-linux-x64"):
                run(
                    "npm", "pack", "--silent", "--pack-destination", staging, f"{package}@{version}"
                )
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def dockerfile_arg(name: str, dockerfile: Path = ROOT / "docker" / "Dockerfile.agent") -> str:
    found = re.search(rf"^ARG {name}=(\S+)", dockerfile.read_text(), re.MULTILINE)
    assert found, f"no ARG {name} in {dockerfile}"
    return found.group(1)


def _fill(directory: Path, source: Path, pattern: str) -> None:
    for old in directory.glob(pattern):
        old.unlink()
    for item in source.glob(pattern):
        shutil.copy2(item, directory / item.name)


def feed_context() -> None:
    """The wheels and tarballs the offline builds install, into docker/ (git ignores them)."""
    _fill(ROOT / "docker" / "wheels", wheels(), "*.whl")
    _fill(ROOT / "docker" / "npm", claude_tarballs(dockerfile_arg("CLAUDE_CODE_VERSION")), "*.tgz")


@dataclass(frozen=True)
class Built:
    seconds: dict[str, float]  # image -> build time


def build_images(engine: Engine, no_cache: bool = False) -> Built:
    base_image(engine)
    feed_context()
    seconds = {}
    for image, dockerfile, arg in (
        (PROXY_IMAGE, "Dockerfile.proxy", "PYTHON_WHEELS=1"),
        (AGENT_IMAGE, "Dockerfile.agent", "CLAUDE_CODE_TARBALLS=1"),
    ):
        started = time.monotonic()
        engine.docker(
            "build", "--network", "host", "--build-arg", arg, *(["--no-cache"] if no_cache else []),
            "-f", ROOT / "docker" / dockerfile, "-t", image, ROOT, timeout=1800,
        )  # fmt: skip
        seconds[image] = time.monotonic() - started
    return Built(seconds)


@contextlib.contextmanager
def engine_with_images() -> Iterator[Engine]:
    with Engine() as engine:
        build_images(engine)
        yield engine
