"""`agentlog run -- CMD`: whatever the command does on the network is recorded or stopped.

Each test runs the real CLI as root; the command runs as `nobody` in its
sandbox, against the local fakes only (the test allowlist, names routed to
127.0.0.1; raw TCP to TEST-NET addresses routed to a local echo service).
"""

from __future__ import annotations

import pwd
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import PIPE

import httpx
import pytest

from tests.conftest import (
    BLOCKED,
    UPSTREAM,
    assert_every_request_closed_once,
    free_port,
    proxy_args,
)
from tests.fakes.tcp_echo import FakeTcp
from tests.harness import agentlog, verify
from tests.netns import AgentNamespace, can_make_namespaces
from tests.probes import QUIC_INITIAL, Listener
from tests.sandbox_runs import (
    AGENT_USER,
    PYTHON,
    agent_python,
    agentlog_run,
    events,
    shared_dir,
    start_run,
)

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not can_make_namespaces(), reason="needs root, ip, nft"),
]

ECHO_AT = "192.0.2.10"  # TEST-NET-1: routed to the echo fake, allowed
REFUSED_AT = "192.0.2.11"  # not allowed


@pytest.fixture(scope="module")
def echo() -> Iterator[FakeTcp]:
    with FakeTcp() as fake:
        yield fake


@pytest.fixture
def args(upstream, upstream_ca, echo) -> list[str]:
    return [
        *proxy_args(upstream, upstream_ca[1]),
        *("--allow", ECHO_AT, "--route", f"{ECHO_AT}=127.0.0.1:{echo.port}"),
    ]


def finished(logs, result) -> list[dict]:
    """What every run ends with: the command's status, a whole journal, each exchange closed."""
    assert "Traceback" not in result.stderr, result.stderr
    found = events(logs)
    assert found[-1]["event"] == "journal" and found[-1]["action"] == "stop"
    assert verify(logs).returncode == 0
    assert_every_request_closed_once(found)
    audited = agentlog("audit", "--logs", logs)
    assert audited.returncode == 0, audited.stdout + audited.stderr
    return found


def test_a_client_using_https_proxy_is_recorded(tmp_path, args):
    logs = tmp_path / "logs"
    result = agentlog_run(
        logs, args, "curl", "-sS", "--max-time", "20", f"https://{UPSTREAM}/hello"
    )
    assert (result.returncode, result.stdout) == (0, "hello"), result.stderr
    found = finished(logs, result)
    [request] = [e for e in found if e["event"] == "request"]
    assert request["domain"] == UPSTREAM and request["mode"] == "regular"
    assert request["client"].startswith("10.231.")
    [response] = [e for e in found if e["event"] == "response"]
    assert response["status"] == 200
    assert (logs / "requests.jsonl").stat().st_mode & 0o777 == 0o640


TLS_ON_A_RAW_SOCKET = f"""
import socket, ssl
context = ssl.create_default_context()  # SSL_CERT_FILE: the bundle agentlog gave us
with socket.create_connection(("{UPSTREAM}", 443), timeout=20) as raw:
    with context.wrap_socket(raw, server_hostname="{UPSTREAM}") as tls:
        request = "GET /echo?raw=1 HTTP/1.1\\r\\nHost: {UPSTREAM}\\r\\nConnection: close"
        tls.sendall(request.encode() + b"\\r\\n\\r\\n")
        print(tls.recv(100).split(b"\\r\\n")[0].decode())
"""


def test_clients_that_ignore_the_proxy_are_intercepted_and_recorded_by_name(tmp_path, args):
    logs = tmp_path / "logs"
    curl = f"curl -sS --max-time 20 --noproxy '*' https://{UPSTREAM}/hello?curl=1"
    python = " ".join(f"'{part}'" for part in agent_python(TLS_ON_A_RAW_SOCKET))
    result = agentlog_run(logs, args, "sh", "-c", f"{curl}; echo; {python}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["hello", "HTTP/1.1 200 "], result.stderr
    found = finished(logs, result)
    requests = {e["path"]: e for e in found if e["event"] == "request"}
    assert set(requests) == {"/hello?curl=1", "/echo?raw=1"}
    for request in requests.values():
        assert request["mode"] == "transparent" and request["domain"] == UPSTREAM
        assert request["agent_dst"].endswith(":443")
    # Their names came from agentlog's DNS, answered there (routed), never looked up.
    lookups = [e for e in found if e["event"] == "dns" and e["domain"] == UPSTREAM]
    assert lookups and {e["answered_by"] for e in lookups} == {"route"}


RAW_TCP = f"""
import socket
with socket.create_connection(("{ECHO_AT}", 7), timeout=10) as s:
    s.sendall(b"ping\\n")
    s.shutdown(socket.SHUT_WR)
    print(s.recv(100))
try:
    with socket.create_connection(("{REFUSED_AT}", 7), timeout=10) as s:
        s.sendall(b"ping\\n")
        print(s.recv(100))
except OSError as e:
    print(type(e).__name__)
"""


def test_raw_tcp_is_recorded_and_refused_by_policy(tmp_path, args, echo):
    logs = tmp_path / "logs"
    before = echo.accepted["echo"]
    result = agentlog_run(logs, args, *agent_python(RAW_TCP))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "b'ping\\n'"
    assert result.stdout.splitlines()[1] in ("b''", "ConnectionResetError")
    found = finished(logs, result)
    relays = {e["domain"]: e for e in found if e["event"] == "tcp"}
    assert relays[ECHO_AT]["decision"] == "allowed" and relays[ECHO_AT]["port"] == 7
    assert relays[ECHO_AT]["mode"] == "transparent"
    assert relays[ECHO_AT]["agent_dst"] == f"{ECHO_AT}:7"
    [end] = [e for e in found if e["event"] == "tcp_end"]
    assert (end["bytes_from_client"], end["bytes_from_server"]) == (5, 5)
    assert end["id"] == relays[ECHO_AT]["id"] and end["duration_ms"] > 0
    assert relays[REFUSED_AT]["decision"] == "blocked"
    [blocked] = [e for e in found if e["event"] == "blocked"]
    assert blocked["domain"] == REFUSED_AT and blocked["id"] == relays[REFUSED_AT]["id"]
    assert echo.accepted["echo"] == before + 1  # the refused one reached nothing


DNS_QUERIES = f"""
import socket
print(answer(ask_udp(("198.51.100.1", 53), query("{UPSTREAM}", ident=1))))
print(answer(ask_tcp(("192.0.2.53", 53), query("{UPSTREAM}", ident=2))))
print(answer(ask_udp(("198.51.100.1", 53), query("{BLOCKED}", ident=3))))
try:
    socket.getaddrinfo("{BLOCKED}", 443)
except socket.gaierror as e:
    print("gaierror")
"""


def test_dns_over_udp_and_tcp_to_any_address_is_answered_and_recorded(tmp_path, args):
    logs = tmp_path / "logs"
    result = agentlog_run(logs, args, *agent_python(DNS_QUERIES, with_dnswire=True))
    assert result.returncode == 0, result.stderr
    udp, tcp, denied, resolver = result.stdout.splitlines()
    host_ip = tcp.split("'")[-2]  # the sandbox's proxy end: where every connection goes
    assert udp == f"(1, 'NOERROR', ['{host_ip}'])" and host_ip.startswith("10.231.")
    assert tcp.startswith("(2, 'NOERROR'")
    assert (denied, resolver) == ("(3, 'NXDOMAIN', [])", "gaierror")
    found = finished(logs, result)
    queries = [e for e in found if e["event"] == "dns"]
    assert [(e["domain"], e["transport"]) for e in queries[:3]] == [
        (UPSTREAM, "udp"),
        (UPSTREAM, "tcp"),
        (BLOCKED, "udp"),
    ]
    assert queries[0]["answers"] == [f"A {host_ip}"]
    assert {e["decision"] for e in queries if e["domain"] == BLOCKED} == {"blocked"}
    assert {e["answered_by"] for e in queries} <= {"route", "policy"}  # no resolver asked


PROBES = f"""
import os, socket, sys, time
host = os.environ["HTTPS_PROXY"].split("//")[1].split(":")[0]
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    for _ in range(3):
        s.sendto(b"probe", (host, int(sys.argv[1])))
    s.sendto(bytes.fromhex("{QUIC_INITIAL.hex()}"), (host, 443))
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP) as s:
    s.sendto(bytes([8, 0, 0, 0, 0, 1, 0, 1]) + b"agentlog", (host, 0))
    s.settimeout(1)
    try:
        s.recv(100)
        print("pong")
    except TimeoutError:
        print("no pong")
print(host, flush=True)
time.sleep(8)
"""


def test_udp_quic_and_ping_become_bypass_events_within_5s_and_reach_nothing(tmp_path, args):
    logs = tmp_path / "logs"
    udp = Listener("0.0.0.0", udp=True, greeting=b"udp")
    quic = Listener("0.0.0.0", 443, udp=True, greeting=b"quic")
    try:
        code = PROBES.replace("sys.argv[1]", str(udp.port))
        run = start_run(logs, args, *agent_python(code))
        assert run.stdout is not None
        assert run.stdout.readline() == "no pong\n"
        host = run.stdout.readline().strip()
        sent = time.monotonic()
        wanted = {("udp", host, udp.port), ("udp", host, 443), ("icmp", host, None)}
        while time.monotonic() < sent + 5:
            seen = {(e["protocol"], e["destination"], e["port"]) for e in events(logs, "bypass")}
            if wanted <= seen:
                break
            time.sleep(0.1)
        assert wanted <= seen, seen
        status = run.wait(60)
        stderr = run.stderr.read() if run.stderr else ""
        assert status == 0, stderr
    finally:
        udp.close()
        quic.close()
    assert udp.hits == [] and quic.hits == []
    finished(logs, subprocess.CompletedProcess(run.args, status, "", stderr))
    bypasses = events(logs, "bypass")
    assert sum(e["packets"] for e in bypasses if e["port"] == udp.port) == 3


def test_the_host_its_services_and_other_sandboxes_are_out_of_reach(tmp_path, args):
    """A service on the host's 0.0.0.0, the UI's loopback port, another namespace:
    the agent dials each directly and through the proxy; none is reached."""
    logs = tmp_path / "logs"
    service = Listener("0.0.0.0", greeting=b"service")
    ui = Listener("127.0.0.1", greeting=b"ui")
    with AgentNamespace() as other:
        neighbour = Listener("0.0.0.0", greeting=b"other", namespace=other.name)
        code = f"""
import os, socket
host = os.environ["HTTPS_PROXY"].split("//")[1].split(":")[0]
proxy_port = int(os.environ["HTTPS_PROXY"].rsplit(":", 1)[1])
def dial(address, port, send=b""):
    try:
        with socket.create_connection((address, port), timeout=5) as s:
            s.sendall(send)
            return s.recv(200).split(b"\\r\\n")[0]
    except OSError as e:
        return type(e).__name__
print(dial(host, {service.port}, b"hello\\n"))
print(dial("{other.agent_ip}", {neighbour.port}, b"hello\\n"))
print(dial(host, {ui.port}, b"GET / HTTP/1.1\\r\\nHost: ui\\r\\n\\r\\n"))
print(dial(host, proxy_port, b"CONNECT 127.0.0.1:{ui.port} HTTP/1.1\\r\\n\\r\\n"))
print(dial(host, proxy_port, b"CONNECT {other.agent_ip}:{neighbour.port} HTTP/1.1\\r\\n\\r\\n"))
"""
        try:
            result = agentlog_run(logs, args, *agent_python(code))
        finally:
            neighbour.close()
    service.close()
    ui.close()
    assert result.returncode == 0, result.stderr
    said = result.stdout.splitlines()
    # Accepted by agentlog and refused: closed, or a 403 where it was HTTP.
    assert said == ["b''", "b''", *["b'HTTP/1.1 403 Forbidden'"] * 3], said
    assert service.hits == [] and ui.hits == [] and neighbour.hits == []
    found = finished(logs, result)
    assert len([e for e in found if e["event"] == "blocked"]) == 5


UI_PROBES = """
import os, socket, sys
host = os.environ["HTTPS_PROXY"].split("//")[1].split(":")[0]
proxy_port = int(os.environ["HTTPS_PROXY"].rsplit(":", 1)[1])
ui_port = int(sys.argv[1])
print(host, flush=True)
token = sys.stdin.readline().strip()  # the worst case: the token has leaked to the agent
def get(target):
    return (f"GET /api/exchanges HTTP/1.1\\r\\nHost: {target}:{ui_port}\\r\\n"
            f"Authorization: Bearer {token}\\r\\nConnection: close\\r\\n\\r\\n").encode()
def dial(address, port, target, tunnel=False):
    connect = f"CONNECT {target}:{ui_port} HTTP/1.1\\r\\n\\r\\n".encode()
    try:
        with socket.create_connection((address, port), timeout=5) as s:
            s.sendall(connect if tunnel else get(target))
            answer = s.recv(4096)
            if tunnel and answer.startswith(b"HTTP/1.1 200"):
                s.sendall(get(target))
                answer = s.recv(4096)
    except OSError as e:
        return type(e).__name__
    return "blocked" if b"x-agentlog: blocked" in answer else answer.split(b"\\r\\n")[0]
print(dial(host, ui_port, host))
print(dial("127.0.0.1", ui_port, "127.0.0.1"))  # the namespace's own loopback: nothing there
for target in ("127.0.0.1", "localhost", host):
    print(dial(host, proxy_port, target, tunnel=True))
"""


def test_the_real_ui_on_every_address_is_out_of_reach_even_with_its_token(args):
    """`--ui 0.0.0.0:PORT`: the UI listens on the sandbox's link too, and the agent
    holds the token; directly and through the proxy it still gets only agentlog's 403."""
    port = free_port()
    with shared_dir() as shared:
        logs = shared / "logs"
        extra = ["--ui", f"0.0.0.0:{port}", "--allow", "10.231.0.0/16"]
        run = start_run(logs, [*args, *extra], *agent_python(UI_PROBES), str(port), stdin=PIPE)
        assert run.stdout is not None and run.stdin is not None
        host = run.stdout.readline().strip()
        token = wait_for_file(logs / "ui-token").strip()
        # The control: from the host the UI answers there.
        url = f"http://{host}:{port}/api/exchanges"
        headers = {"Authorization": f"Bearer {token}", "Host": f"localhost:{port}"}
        assert eventually(lambda: httpx.get(url, headers=headers, timeout=5).status_code) == 200
        run.stdin.write(token + "\n")
        run.stdin.close()
        status = run.wait(60)
        stderr = run.stderr.read() if run.stderr else ""
        assert status == 0, stderr
        said = run.stdout.read().splitlines()
        assert said == ["blocked", "ConnectionRefusedError", *["blocked"] * 3], said
        found = finished(logs, subprocess.CompletedProcess(run.args, status, "", stderr))
        blocked = sorted((e["domain"], str(e["rule"])) for e in found if e["event"] == "blocked")
        # loopback by the allowlist; the link's address by the guard, though --allow'ed
        guarded = (host, "deny 10.231.0.0/16")
        assert blocked == sorted([("127.0.0.1", "None"), ("localhost", "None"), *[guarded] * 2])


def wait_for_file(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)
    return path.read_text()


def eventually(probe: Callable[[], object], timeout: float = 30) -> object:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return probe()
        except (OSError, httpx.HTTPError):
            assert time.monotonic() < deadline, "never answered"
            time.sleep(0.2)


def test_the_guard_refuses_the_host_even_when_the_policy_allows_it(tmp_path, args):
    logs = tmp_path / "logs"
    service = Listener("0.0.0.0", greeting=b"service")
    code = f"""
import os, socket
host = os.environ["HTTPS_PROXY"].split("//")[1].split(":")[0]
with socket.create_connection((host, {service.port}), timeout=5) as s:
    s.sendall(b"hello\\n")  # a client that speaks first: mitmproxy decides by the first bytes
    print(s.recv(100))
"""
    try:
        result = agentlog_run(logs, [*args, "--allow", "10.231.0.0/16"], *agent_python(code))
    finally:
        service.close()
    assert result.stdout == "b''\n", result.stderr
    assert service.hits == []
    [blocked] = [e for e in finished(logs, result) if e["event"] == "blocked"]
    assert blocked["rule"] == "deny 10.231.0.0/16"


HOSTILE = """
import os, sys, socket
logs = sys.argv[1]
def attempt(what, action):
    try:
        action()
        print("DONE", what)
    except OSError as e:
        print("refused", what, type(e).__name__)
attempt("list", lambda: os.listdir(logs))
for name in ("requests.jsonl", "ca.key", "journal.key", "keys.log", "ui-token"):
    attempt("read " + name, lambda: open(os.path.join(logs, name), "rb").read())
attempt("append", lambda: open(os.path.join(logs, "requests.jsonl"), "ab").write(b"{}\\n"))
attempt("delete", lambda: os.unlink(os.path.join(logs, "requests.jsonl")))
attempt("chmod", lambda: os.chmod(logs, 0o777))
attempt("rename", lambda: os.rename(logs, logs + ".moved"))
attempt("environ", lambda: open(f"/proc/{os.getppid()}/environ", "rb").read())
attempt("kill the proxy", lambda: os.kill(os.getppid(), 9))  # our parent: agentlog run
"""


def test_the_logs_cannot_be_read_or_changed_by_the_command(args):
    with shared_dir() as shared:
        logs = shared / "logs"
        (logs / "ui-token").parent.mkdir()
        (logs / "ui-token").write_text("secret\n")
        script = agent_python(HOSTILE)
        result = agentlog_run(logs, args, *script, str(logs))
        assert result.returncode == 0, result.stderr
        said = result.stdout.splitlines()
        assert len(said) == 12 and all(line.startswith("refused") for line in said), said
        assert logs.stat().st_mode & 0o777 == 0o700
        finished(logs, result)
        assert verify(logs).returncode == 0


SCRIPT = f"""
import os, sys, urllib.request
# urllib takes HTTPS_PROXY, and ssl the CA bundle (SSL_CERT_FILE), from the environment
with urllib.request.urlopen("https://{UPSTREAM}/hello", timeout=20) as response:
    print(response.status, response.read().decode())
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(os.getuid(), *(status[k].strip() for k in ("NoNewPrivs", "CapEff", "CapBnd")))
sys.exit(int(sys.argv[1]))
"""


def test_python3_script_py_runs_as_the_user_without_privileges(args):
    """`agentlog run -- python3 script.py`, from the script's directory, as a user would."""
    with shared_dir() as shared:
        (shared / "script.py").write_text(SCRIPT)
        (shared / "script.py").chmod(0o644)
        logs = shared / "logs"
        result = agentlog_run(logs, args, PYTHON, "script.py", "3", cwd=shared)
        assert result.returncode == 3, result.stderr
        nobody = pwd.getpwnam(AGENT_USER).pw_uid
        zero = "0" * 16
        assert result.stdout.splitlines() == ["200 hello", f"{nobody} 1 {zero} {zero}"]
        [request] = [e for e in finished(logs, result) if e["event"] == "request"]
        assert request["domain"] == UPSTREAM and request["mode"] == "regular"


def test_the_exit_status_is_the_commands(tmp_path, args):
    logs = tmp_path / "logs"
    assert agentlog_run(logs, args, "sh", "-c", "exit 7").returncode == 7
    assert agentlog_run(logs, args, "sh", "-c", "kill -TERM $$").returncode == 128 + 15
    missing = agentlog_run(logs, args, "no-such-command-here")
    assert missing.returncode == 127 and "no-such-command-here" in missing.stderr
    assert agentlog_run(logs, args, "id", "-un").stdout == "nobody\n"
    stdin = agentlog_run(logs, args, "cat", input="from stdin\n")
    assert stdin.stdout == "from stdin\n"


def test_bad_requests_are_one_line_errors(tmp_path, args):
    logs = tmp_path / "logs"
    for extra, command, word in (
        ([], [], "nothing to run"),
        (["--user", "root"], ["true"], "--as-root"),
    ):
        result = agentlog_run(logs, [*args, *extra], *command)
        assert result.returncode == 2 and word in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
