"""`agentlog run`: a command in a sandbox whose only way out is agentlog.

In order: leftovers of killed runs are removed; the logs directory is made
root's; a namespace and veth pair are made (netns.py); the proxy, capture on
the veth, the DNS listener and the UI start on the link's proxy end
(services.py); the firewall goes on (firewall.py) and its drops are polled
into `bypass` events; the command starts inside, unprivileged (agent.py).
When it ends, whatever it left running in the namespace is killed, the
services stop (the journal's last line is their `stop`), and the firewall,
the namespace, the link and the sandbox's files go, in that order. The same
teardown runs after Ctrl-C, SIGTERM or an error; a SIGKILLed run leaves its
sandbox to `agentlog clean` or the next run (leftovers.py).

Signals while the command runs: the terminal's SIGINT and SIGQUIT reach the
command directly (it is in our process group) and it decides what they
mean, as it would outside; SIGTERM and SIGHUP are passed on to it, and if it
is not gone within a few seconds, everything in the namespace is killed.
The proxy's own messages go to a file while the command has the terminal,
and are shown when it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agentlog.config import ProxyConfig
from agentlog.errors import ConfigError
from agentlog.logsdir import LogsDir
from agentlog.sandbox import firewall, guard, leftovers, netns, reach
from agentlog.sandbox.agent import AgentUser, agent_command, agent_environment
from agentlog.sandbox.files import SandboxFiles
from agentlog.sandbox.firewall import Firewall
from agentlog.services import STOP_GRACE, ServiceDied, Services

TOOLS = ("ip", "nft", "setpriv", "tcpdump")
SANDBOX_FAILED = 125  # exit status when agentlog, not the command, failed (as docker run)
SHOWN_PROXY_LINES = 20


@dataclass(frozen=True)
class Sandboxed:
    config: ProxyConfig  # the user's: where it listens and captures is decided here
    logs: LogsDir
    user: AgentUser
    command: list[str]
    ui: tuple[str, int] | None = None


def say(text: str) -> None:
    print(f"agentlog run: {text}", file=sys.stderr, flush=True)


def preflight(request: Sandboxed) -> None:
    if not request.command:
        raise ConfigError("nothing to run: agentlog run [OPTIONS] -- COMMAND [ARGS...]")
    if os.geteuid() != 0:
        raise ConfigError("agentlog run makes a network namespace and firewall: run it as root")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise ConfigError(f"agentlog run needs {', '.join(missing)} on PATH")


def run(request: Sandboxed) -> int:
    """Run the command sandboxed; its exit status (128+N if a signal N ended it)."""
    preflight(request)
    for name in leftovers.clean():
        say(f"removed sandbox {name}, left by a run that was killed")
    reach.protect_logs(request.logs.root)
    reach.check_key(request.config.journal_key, request.user)
    if request.user.is_root:
        say("warning: the command runs as root: its traffic is still recorded, but it can "
            "read and change the logs and leave the sandbox")  # fmt: skip
    elif (movable := reach.movable_by(request.logs.root, request.user)) is not None:
        say(f"warning: {request.user.name} can rename {movable}, and so move the logs aside "
            "(the records stay whole): keep --logs where only root can write")  # fmt: skip
    return asyncio.run(_run(request))


class _Signals:
    """What a signal means depends on the phase: setting up, the command running, tearing down."""

    def __init__(self, main: asyncio.Task) -> None:
        self.main = main
        self.received: int | None = None
        self.agent: asyncio.subprocess.Process | None = None
        self.tearing_down = False
        self._killer: asyncio.Task | None = None
        self.kill_inside: Callable[[], None] = lambda: None

    def __call__(self, sig: int) -> None:
        if self.tearing_down:
            return
        if self.agent is None:  # setting up: stop, undo what is done
            self.received = self.received or sig
            self.main.cancel()
        elif sig in (signal.SIGTERM, signal.SIGHUP):
            self.received = self.received or sig
            with contextlib.suppress(ProcessLookupError):
                self.agent.send_signal(sig)
            if self._killer is None:
                self._killer = asyncio.create_task(self._kill_later())
        # SIGINT, SIGQUIT: the terminal sent them to the command too; it decides.

    async def _kill_later(self) -> None:
        await asyncio.sleep(STOP_GRACE)
        await asyncio.to_thread(self.kill_inside)


async def _run(request: Sandboxed) -> int:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    signals = _Signals(main)
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
    for sig in handled:
        loop.add_signal_handler(sig, signals, sig)
    try:
        return await _sandboxed(request, signals)
    except asyncio.CancelledError:
        if signals.received is None:
            raise
        return 128 + signals.received
    except ServiceDied as e:
        e.status = SANDBOX_FAILED
        raise
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


async def _sandboxed(request: Sandboxed, signals: _Signals) -> int:
    link = netns.create()  # not in a thread: a cancel meanwhile would lose what it made
    files = SandboxFiles(link.name)
    try:
        files.create(resolver=link.host_ip)
        signals.kill_inside = lambda: leftovers.kill_inside(link.name)
        config = _sandbox_config(request.config, link)
        async with Services(config, request.logs, _announce, ui=request.ui) as services:
            session = services.proxy.session
            say(f"sandbox {link.name}, recording to {request.logs.root} (session {session})")
            files.add_ca(request.logs.ca_cert)
            fw = _firewall(link, config)
            try:
                await asyncio.to_thread(firewall.apply, fw)
                services.watch_bypasses(fw.table)
                return await _command(request, link, files, config, services, signals)
            finally:
                signals.tearing_down = True
                await asyncio.to_thread(leftovers.kill_inside, link.name)
    finally:
        signals.tearing_down = True
        await asyncio.to_thread(_take_down, link, files)


def _take_down(link: netns.AgentLink, files: SandboxFiles) -> None:
    try:
        firewall.remove(link.nft_table)
    finally:
        try:
            netns.remove(link.name)
        finally:
            files.remove()


async def _command(
    request: Sandboxed,
    link: netns.AgentLink,
    files: SandboxFiles,
    config: ProxyConfig,
    services: Services,
    signals: _Signals,
) -> int:
    proxy_url = f"http://{link.host_ip}:{config.listen[1]}"
    env = agent_environment(os.environ, request.user, proxy_url, files.ca_file, files.bundle)
    agent = signals.agent = await asyncio.create_subprocess_exec(
        *agent_command(link.name, request.user, request.command), env=env
    )
    with _stderr_to(files.proxy_log):  # the command has the terminal (it got our fd 2 first)
        try:
            await services.wait(agent.wait())
        except ServiceDied:
            signals.tearing_down = True
            with contextlib.suppress(ProcessLookupError):
                agent.terminate()
            raise
    _show_proxy_log(files.proxy_log)
    status = agent.returncode
    assert status is not None
    return 128 - status if status < 0 else status


@contextlib.contextmanager
def _stderr_to(path: Path):
    """Our fd 2 (the proxy's messages) into `path` while the command has the terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.dup2(log, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(log)


def _show_proxy_log(path: Path) -> None:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return
    shown = [line for line in lines if not line.startswith("agentlog proxy: journal head")]
    if shown:
        say(f"the proxy said, while the command ran ({len(shown)} lines, the last shown):")
        for line in shown[-SHOWN_PROXY_LINES:]:
            print(f"  {line}", file=sys.stderr)


def _announce(text: str) -> None:
    """The proxy's ready line and CA go unsaid; its chain heads are worth a copy outside."""
    if "journal head" in text:
        say(text)
    elif not text.startswith(("listening on", "CA ")):
        print(f"agentlog proxy: {text}", file=sys.stderr, flush=True)


def _sandbox_config(config: ProxyConfig, link: netns.AgentLink) -> ProxyConfig:
    """The proxy on the link's proxy end, capturing it, guarding the host."""
    host = str(link.host_ip)
    explicit, transparent, dns = free_ports(host, 3)
    blocks = guard.guard_blocks(guard.host_addresses(), netns.DEFAULT_POOL)
    policy, left_open = guard.guarded(config.policy, blocks, config.routes)
    for block in left_open:
        say(f"warning: a --route points into {block}: the command may reach it through the proxy")
    assert config.capture is not None
    return dataclasses.replace(
        config,
        listen=(host, explicit),
        transparent=(host, transparent),
        dns=(host, dns),
        capture=dataclasses.replace(config.capture, interface=link.host_if),
        policy=policy,
    )


def _firewall(link: netns.AgentLink, config: ProxyConfig) -> Firewall:
    assert config.transparent is not None and config.dns is not None
    return Firewall(
        table=link.nft_table,
        agent_if=link.host_if,
        agent_ip=link.agent_ip,
        proxy_ip=link.host_ip,
        explicit_port=config.listen[1],
        transparent_port=config.transparent[1],
        dns_port=config.dns[1],
    )


def free_ports(host: str, count: int) -> list[int]:
    """`count` different ports free on `host` for TCP, the last also for UDP (DNS)."""
    held: list[socket.socket] = []
    try:
        while len(held) < count:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.bind((host, 0))
            held.append(tcp)
            if len(held) == count:
                udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    udp.bind((host, tcp.getsockname()[1]))
                except OSError:
                    held.pop().close()  # that port is taken for UDP: another
                finally:
                    udp.close()
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()
