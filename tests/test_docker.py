"""Docker Compose on a real Docker engine, end to end (issue 10).

The README's docker-compose.yml, with tests/docker-compose.test.yml adding
only the `internet` service (tests/fakes/internet.py: the fake Anthropic API,
an HTTPS site, a UDP listener) and the proxy's routes and allowlist to it.
The engine is our own dockerd (tests/docker_engine.py), the images built from
this checkout without a registry. Two runs, as the README says to use it:

* `docker compose up`: Claude Code runs AGENT_PROMPT to its end;
* `docker compose up -d proxy`, then `docker compose run --rm agent` with a
  custom AGENT_PROMPT, and the agent container probed while the proxy runs:
  every way around the proxy it might try, as the attack itself.
"""

from __future__ import annotations

import ipaddress
import json
import os
import pty
import re
import select
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import docker_engine
from tests.claude_runs import API_KEY
from tests.docker_engine import COMPOSE, ROOT, Engine
from tests.fakes.certs import issue_leaf, make_ca
from tests.harness import agentlog, verify

pytestmark = [
    pytest.mark.docker,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("apt-get"), reason="needs root, apt"),
]

WRITE_PROMPT = 'Please write the file hello.txt containing "hello from the fake"'
CUSTOM_PROMPT = 'Please write the file custom.txt containing "a custom prompt"'
MESSAGES = "/v1/messages"
AGENT_SUBNET = ipaddress.ip_network("172.29.80.0/24")
PROXY_LINK_IP, AGENT_IP = "172.29.80.2", "172.29.80.3"  # on the agent network
PROXY_IP = "10.89.0.1"  # the proxy's end of the agent's tunnel
RUN_TIMEOUT = 600


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with docker_engine.engine_with_images() as running:
        yield running


@dataclass
class Project:
    """One compose project in a directory of its own: ./logs, ./output, the test's state."""

    engine: Engine
    directory: Path
    name: str
    prompt: str = WRITE_PROMPT
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    @property
    def output(self) -> Path:
        return self.directory / "output"

    @property
    def state(self) -> Path:
        return self.directory / "state"

    def compose(
        self, *args: str, timeout: float = RUN_TIMEOUT, input: str | None = None
    ) -> subprocess.CompletedProcess:
        stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        return subprocess.run(
            self.compose_command(*args),
            env=self.compose_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            **stdin,
        )

    def compose_env(self) -> dict[str, str]:
        return {
            **self.engine.env,
            "HOME": str(self.directory / "home"),
            "ANTHROPIC_API_KEY": API_KEY,
            "AGENT_PROMPT": self.prompt,
            "AGENTLOG_TEST_FAKES": str(ROOT / "tests" / "fakes"),
            "AGENTLOG_TEST_STATE": str(self.state),
            **self.extra_env,
        }

    def compose_command(self, *args: str) -> list[str]:
        return [
            *(COMPOSE, "--ansi", "never", "-p", self.name),
            *("--project-directory", str(self.directory)),
            *("-f", str(ROOT / "docker-compose.yml")),
            *("-f", str(ROOT / "tests" / "docker-compose.test.yml")),
            *args,
        ]

    def in_terminal(self, *args: str, typed: str, timeout: float = 120) -> str:
        """`docker compose ARGS` on a terminal of its own (a pty), `typed` typed into it."""
        main, side = pty.openpty()
        command = self.compose_command(*args)
        process = subprocess.Popen(
            command, env=self.compose_env(), stdin=side, stdout=side, stderr=side, close_fds=True
        )
        os.close(side)
        output, deadline, sent = b"", time.monotonic() + timeout, False
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([main], [], [], 0.5)
                if ready:
                    try:
                        chunk = os.read(main, 4096)
                    except OSError:  # the terminal closed: the command is done
                        break
                    if not chunk:
                        break
                    output += chunk
                    if not sent and b"$ " in output:  # bash's prompt
                        os.write(main, typed.encode())
                        sent = True
                elif process.poll() is not None:
                    break
        finally:
            os.close(main)
            process.wait(30)
        return output.decode(errors="replace")

    def events(self, kind: str | None = None) -> list[dict]:
        lines = (self.logs / "requests.jsonl").read_text().splitlines()
        found = [json.loads(line) for line in lines if line.strip()]
        return [e for e in found if kind is None or e["event"] == kind]

    def peers(self) -> list[dict]:
        path = self.state / "peers.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def container_ip(self, service: str, network: str) -> str:
        cid = self.compose("ps", "-q", service).stdout.strip()
        networks = f'(index .NetworkSettings.Networks "{self.name}_{network}")'
        done = self.engine.docker("inspect", "-f", f"{{{{{networks}.IPAddress}}}}", cid)
        return done.stdout.strip()


def _project(engine: Engine, directory: Path, name: str, prompt: str) -> Project:
    project = Project(engine, directory, name, prompt)
    for sub in ("logs", "output", "state", "home/.claude"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(project.state, 0o755)
    ca = make_ca("agentlog docker test CA")
    ca.write(project.state, "ca.pem")
    issue_leaf(ca, ["api.anthropic.com"]).write(project.state, "anthropic")
    issue_leaf(ca, ["site.test"]).write(project.state, "site")
    for key in project.state.glob("*.key"):
        key.chmod(0o644)  # read by the internet container's root: the test's own keys
    project.compose("down", "-v", "--remove-orphans", timeout=120)
    return project


def _down(project: Project) -> None:
    done = project.compose("down", "-v", "--remove-orphans", timeout=180)
    assert done.returncode == 0, done.stderr


def succeeded(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, (
        f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return done.stdout


# -- one: `docker compose up` --


@pytest.fixture(scope="module")
def compose_up(engine, tmp_path_factory) -> Iterator[Project]:
    project = _project(engine, tmp_path_factory.mktemp("compose-up"), "altestup", WRITE_PROMPT)
    try:
        project.up = project.compose(  # type: ignore[attr-defined]
            "up", "--no-build", "--abort-on-container-exit", "--exit-code-from", "agent"
        )
        if project.up.returncode != 0:  # what the proxy said, for the failure's message
            project.up.stderr += project.compose("logs", "--no-color", "proxy").stdout[-4000:]
    finally:
        _down(project)  # the agent's subnet is fixed: one project at a time
    yield project


def test_compose_up_runs_claude_code_and_its_file_and_reply_land_in_output(compose_up):
    project = compose_up
    succeeded(project.up)
    assert (project.output / "hello.txt").read_text() == "hello from the fake"
    reply = (project.output / "agent-reply.txt").read_text()
    assert "hello.txt" in reply or "hello from the fake" in reply, reply


def test_compose_up_journal_holds_the_messages_call_with_the_key_redacted(compose_up):
    project = compose_up
    messages = [
        e
        for e in project.events("request")
        if e["method"] == "POST" and e["path"].startswith(MESSAGES)
    ]
    assert messages and all(e["domain"] == "api.anthropic.com" for e in messages)
    assert {e["headers"]["x-api-key"] for e in messages} == {"[REDACTED]"}
    assert all(e["client"].startswith("10.89.0.2:") for e in messages)  # the agent, tunnelled
    searched = [
        p for p in project.logs.rglob("*")
        if p.is_file() and not p.name.startswith("capture_") and p.name != "keys.log"
    ]  # fmt: skip
    assert [p for p in searched if API_KEY.encode() in p.read_bytes()] == []
    # It went out, unchanged, to the fake: through the proxy and nowhere else.
    answered = [json.loads(x) for x in (project.state / "anthropic.jsonl").read_text().splitlines()]
    assert {e["headers"].get("x-api-key") for e in answered if e["path"].startswith(MESSAGES)} == {
        API_KEY
    }


def test_compose_up_logs_verify_audit_and_the_capture_decrypts(compose_up):
    project = compose_up
    assert project.events()[-1]["action"] == "stop"
    checked = verify(project.logs)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    audited = agentlog("audit", "--logs", project.logs)
    assert audited.returncode == 0, audited.stdout + audited.stderr
    captures = sorted(project.logs.glob("capture_*.pcap"))
    assert captures
    decrypted = subprocess.run(
        [
            *("tshark", "-n", "-r", str(captures[0])),
            *("-o", f"tls.keylog_file:{project.logs / 'keys.log'}"),
            *("-Y", "http2.header.value or http.request.uri", "-T", "fields"),
            *("-e", "http.request.uri", "-e", "http2.header.value"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert MESSAGES in decrypted.stdout, decrypted.stdout[-2000:] + decrypted.stderr[-2000:]


# -- two: `up -d proxy`, `run --rm agent`, and the agent container probed --

PROBE = r"""
import json, os, socket, subprocess, sys
out = {}
def tcp(addr, port):
    try:
        s = socket.create_connection((addr, port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: " + addr.encode() + b"\r\nConnection: close\r\n\r\n")
        data = s.recv(400)
        s.close()
        return data.decode(errors="replace") or "closed"
    except OSError as e:
        return f"error: {e}"
def udp(addr, port):
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        s.sendto(b"agentlog probe", (addr, port))
        return s.recvfrom(512)[0].decode(errors="replace")
    except OSError as e:
        return f"error: {e}"
def icmp(addr):
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        s.settimeout(2)
        s.sendto(b"\x08\x00\x00\x00\x00\x01\x00\x01agentlog", (addr, 0))
        return s.recvfrom(512)[0].hex()
    except OSError as e:
        return f"error: {e}"
def docker_dns():
    query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05proxy\x00\x00\x01\x00\x01"
    return udp_raw("127.0.0.11", 53, query)
def udp_raw(addr, port, data):
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        s.sendto(data, (addr, port))
        return s.recvfrom(512)[0].hex()
    except OSError as e:
        return f"error: {e}"
args = json.loads(sys.argv[1])
out["status"] = dict(
    line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line
)
out["uid"] = os.getuid()
out["env"] = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
out["mounts"] = [line.split()[4] for line in open("/proc/self/mountinfo")]
keys = []
for top, dirs, files in os.walk("/"):
    if top in ("/proc", "/sys", "/dev"):
        dirs[:] = []
        continue
    keys += [os.path.join(top, f) for f in files if f in ("ca.key", "journal.key", "ui-token")]
out["keys"] = keys
out["ca_dir"] = sorted(os.listdir("/ca"))
out["routes"] = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
out["resolv"] = open("/etc/resolv.conf").read()
out["tcp"] = {f"{a}:{p}": tcp(a, p) for a, p in args["tcp"]}
out["udp"] = {f"{a}:{p}": udp(a, p) for a, p in args["udp"]}
out["icmp"] = {a: icmp(a) for a in args["icmp"]}
out["docker_dns"] = docker_dns()
out["no_proxy_curl"] = subprocess.run(
    ["curl", "-sS", "--noproxy", "*", "--max-time", "20", "https://site.test:8443/ignoring-the-proxy"],
    capture_output=True, text=True,
).stdout
print("PROBE" + json.dumps(out))
"""


class HostListener:
    """TCP and UDP on every address of the Docker host: whoever reaches it is noted."""

    def __init__(self) -> None:
        self.tcp = socket.create_server(("0.0.0.0", 0))
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("0.0.0.0", self.port))
        self.udp.settimeout(0.5)
        self.tcp.settimeout(0.5)
        self.reached: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=f, daemon=True) for f in (self._accept, self._recv)
        ]
        for thread in self._threads:
            thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.tcp.accept()
                self.reached.append(("tcp", peer[0]))
                conn.close()
            except OSError:
                continue

    def _recv(self) -> None:
        while not self._stop.is_set():
            try:
                _, peer = self.udp.recvfrom(512)
                self.reached.append(("udp", peer[0]))
            except OSError:
                continue

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self.tcp.close()
        self.udp.close()


def host_addresses() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    found = [line.split()[3].split("/")[0] for line in out.splitlines()]
    return [a for a in found if not a.startswith("127.")]


@dataclass
class Interactive:
    project: Project
    run: subprocess.CompletedProcess
    probe: dict
    addresses: dict[str, str]
    listener_reached: list[tuple[str, str]]
    listener_port: int
    shell: str
    ui_token: str
    ui_list: dict
    ui_bound: list[str]
    ui_without_token: int
    proxy_said: str
    ui_listening: list[str]  # `ss -ltn` on the host: what listens on port 8888


@pytest.fixture(scope="module")
def interactive(engine, tmp_path_factory, compose_up) -> Iterator[Interactive]:
    project = _project(engine, tmp_path_factory.mktemp("interactive"), "altestrun", WRITE_PROMPT)
    listener = HostListener()
    try:
        succeeded(project.compose("up", "-d", "--no-build", "proxy", timeout=300))
        run = project.compose("run", "--rm", "-T", "-e", f"AGENT_PROMPT={CUSTOM_PROMPT}", "agent")
        addresses = {
            "internet": project.container_ip("internet", "outside"),
            "proxy_outside": project.container_ip("proxy", "outside"),
        }
        targets = host_addresses()  # the Docker host's: its bridges' too
        targets = [a for a in targets if not a.startswith("10.231.")]  # others' sandboxes
        assert "172.29.80.1" in targets  # the agent network's gateway
        probe_args = {
            "tcp": [
                *[(a, listener.port) for a in targets],
                (PROXY_IP, 8888),  # the UI, from the agent's side
                (PROXY_LINK_IP, 8888),  # the same, on the network itself
                (addresses["proxy_outside"], 8888),
                (addresses["internet"], 8443),  # the internet service, directly
                (PROXY_IP, 8081),  # agentlog's transparent port, straight at it
            ],
            "udp": [*[(a, listener.port) for a in targets], (addresses["internet"], 5353)],
            "icmp": [addresses["internet"], "172.29.80.1"],
        }
        probed = project.compose(
            "run", "--rm", "-T", "agent", "python3", "-c", PROBE, json.dumps(probe_args)
        )
        shell = project.in_terminal(
            "run", "--rm", "agent", "bash", typed="id -un; grep CapEff /proc/self/status; exit\n"
        )
        found = re.search(r"PROBE(\{.*\})", probed.stdout)
        assert found, probed.stdout[-3000:] + probed.stderr[-3000:]
        token = (project.logs / "ui-token").read_text().strip()
        request = urllib.request.Request(
            "http://127.0.0.1:8888/api/exchanges?limit=1000",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            ui_list = json.loads(answer.read())
        ports = engine.docker("port", project.compose("ps", "-q", "proxy").stdout.strip()).stdout
        try:
            urllib.request.urlopen("http://127.0.0.1:8888/api/exchanges", timeout=10)
            without_token = 200
        except urllib.error.HTTPError as e:
            without_token = e.code
        listener_reached = list(listener.reached)
        proxy_said = project.compose("logs", "--no-color", "proxy").stdout
        listening = subprocess.run(
            ["ss", "-Hltn", "sport = :8888"], capture_output=True, text=True
        ).stdout.split()
        (project.directory / "probe.json").write_text(found.group(1))
        _down(project)  # the journal complete: its `stop` last
        yield Interactive(
            project, run, json.loads(found.group(1)), addresses, listener_reached, listener.port,
            shell, token, ui_list,
            ports.split(), without_token, proxy_said, listening,
        )  # fmt: skip
    finally:
        listener.close()
        _down(project)


def test_run_with_a_custom_prompt_works_the_same_way(interactive):
    succeeded(interactive.run)
    project = interactive.project
    assert (project.output / "custom.txt").read_text() == "a custom prompt"
    prompts = [
        json.loads(x).get("body", {})
        for x in (project.state / "anthropic.jsonl").read_text().splitlines()
    ]
    assert any("a custom prompt" in json.dumps(p) for p in prompts)
    requests = project.events("request")
    messages = [e for e in requests if e["method"] == "POST" and e["path"].startswith(MESSAGES)]
    assert messages and {e["headers"]["x-api-key"] for e in messages} == {"[REDACTED]"}


def test_an_interactive_shell_runs_as_the_agent_without_capabilities(interactive):
    lines = [line.strip() for line in interactive.shell.splitlines()]
    assert "agent" in lines, interactive.shell
    assert "CapEff:\t0000000000000000" in lines, interactive.shell


def test_the_agent_has_no_capabilities_no_logs_and_no_ca_key(interactive):
    probe = interactive.probe
    status = probe["status"]
    for field_name in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"):
        assert int(status[field_name], 16) == 0, (field_name, status[field_name])
    assert status["NoNewPrivs"].strip() == "1"
    assert probe["uid"] == 1000
    assert not [m for m in probe["mounts"] if m == "/logs" or m.startswith("/logs/")]
    assert probe["keys"] == []
    assert probe["ca_dir"] == ["ca.crt"]


def test_the_agent_environment_is_agentlog_runs(interactive):
    from agentlog.sandbox.agent import BUNDLE_VARIABLES, NO_PROXY, PROXY_VARIABLES

    env = interactive.probe["env"]
    assert {env[v] for v in PROXY_VARIABLES} == {f"http://{PROXY_IP}:8080"}
    assert env["NO_PROXY"] == env["no_proxy"] == NO_PROXY
    assert len({env[v] for v in BUNDLE_VARIABLES}) == 1
    assert env["NODE_EXTRA_CA_CERTS"] == "/ca/ca.crt"
    assert "ALL_PROXY" not in env and "all_proxy" not in env


def test_the_agent_routes_and_names_go_to_the_proxy_only(interactive):
    probe = interactive.probe
    assert probe["resolv"].split() == ["nameserver", PROXY_IP]
    routes = probe["routes"].splitlines()
    assert routes[0].split() == ["default", "via", PROXY_IP, "dev", "agentlog0"]
    assert [r.split() for r in routes[1:] if "eth0" in r] == [
        [PROXY_LINK_IP, "dev", "eth0", "scope", "link"]
    ]
    assert not [r for r in routes if r.startswith(str(AGENT_SUBNET))], routes
    assert probe["docker_dns"].startswith("error"), "Docker's resolver answered the agent"


def test_a_client_ignoring_the_proxy_variables_is_still_recorded(interactive):
    assert interactive.probe["no_proxy_curl"] == "hello from site.test\n"
    found = [
        e for e in interactive.project.events("request")
        if e["path"] == "/ignoring-the-proxy"
    ]  # fmt: skip
    assert len(found) == 1 and found[0]["mode"] == "transparent"
    assert found[0]["domain"] == "site.test"


def test_udp_and_icmp_reach_nothing_and_are_recorded_as_bypass(interactive):
    probe = interactive.probe
    assert all(answer.startswith("error") for answer in probe["udp"].values()), probe["udp"]
    assert all(answer.startswith("error") for answer in probe["icmp"].values()), probe["icmp"]
    bypasses = interactive.project.events("bypass")
    seen = {(e["protocol"], e["destination"], e.get("port")) for e in bypasses}
    internet = interactive.addresses["internet"]
    assert ("udp", internet, 5353) in seen, seen
    if not probe["icmp"][internet].startswith("error: [Errno 1]"):  # sent, not refused unseen
        assert any(p == "icmp" and d == internet for p, d, _ in seen), seen
    assert [p for p in interactive.project.peers() if p["service"] == "udp"] == []


def test_the_docker_host_the_ui_and_the_internet_service_are_out_of_reach(interactive):
    probe = interactive.probe
    assert interactive.listener_reached == []
    for target, answer in probe["tcp"].items():
        assert not answer.startswith("HTTP/1.1 2"), (target, answer)
        assert "agentlog ui" not in answer.lower(), (target, answer)
    proxy_outside = interactive.addresses["proxy_outside"]
    peers = {p["peer"] for p in interactive.project.peers()}
    assert peers <= {proxy_outside}, peers  # the internet service saw the proxy alone
    blocked = {(e["domain"], e["port"]) for e in interactive.project.events("blocked")}
    assert (PROXY_IP, 8888) in blocked and (proxy_outside, 8888) in blocked, blocked
    for host in host_addresses():  # through the tunnel, to the proxy: refused there
        if not host.startswith("10.231."):
            assert (host, interactive.listener_port) in blocked, (host, blocked)
    bypassed = {
        (e["protocol"], e["destination"], e["port"]) for e in interactive.project.events("bypass")
    }
    assert ("tcp", PROXY_LINK_IP, 8888) in bypassed, bypassed  # on the network: dropped


def test_the_ui_answers_on_the_hosts_loopback_only_and_lists_the_run(interactive):
    paths = {row["path"] for row in interactive.ui_list["items"]}
    assert "/ignoring-the-proxy" in paths
    assert any(p and p.startswith(MESSAGES) for p in paths)
    assert interactive.ui_bound == ["8888/tcp", "->", "127.0.0.1:8888"], interactive.ui_bound
    addresses = [word for word in interactive.ui_listening if word.endswith(":8888")]
    assert addresses == ["127.0.0.1:8888"], interactive.ui_listening
    assert interactive.ui_without_token == 401
    # The URL to open, as the README says: `docker compose logs proxy`.
    assert f"http://localhost:8888/?token={interactive.ui_token}" in interactive.proxy_said


def test_interactive_run_logs_verify_and_audit(interactive):
    logs = interactive.project.logs
    assert interactive.project.events()[-1]["action"] == "stop"
    checked = verify(logs)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    audited = agentlog("audit", "--logs", logs)
    assert audited.returncode == 0, audited.stdout + audited.stderr
