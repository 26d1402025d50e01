"""The command line: bad input is one line and exit 2; the read side shows the journal."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import UPSTREAM
from tests.harness import agentlog, curl

pytestmark = pytest.mark.timeout(60)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("agentlog: error: ")
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (["--listen", "nowhere"], "--listen"),
        (["--listen", "127.0.0.1:99999"], "--listen"),
        (["--allow", "bad host!"], "--allow"),
        (["--deny", "a.com:http"], "--deny"),
        (["--route", "nohost"], "--route"),
        (["--route", "x.test=127.0.0.1"], "--route"),
        (["--body-cap", "lots"], "size"),
        (["--upstream-ca", "/nonexistent/ca.pem"], "--upstream-ca"),
        (["--bogus"], "unrecognized"),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v),
)
def test_malformed_flags(tmp_path, args, word):
    assert_one_line_error(agentlog("proxy", "--logs", str(tmp_path), *args), word)
    assert not (tmp_path / "requests.jsonl").exists()


def test_unwritable_logs_dir():
    result = agentlog("proxy", "--logs", "/proc/agentlog-cannot-be-here", "--listen", "127.0.0.1:0")
    assert_one_line_error(result, "not writable")


def test_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_one_line_error(
            agentlog("proxy", "--logs", str(tmp_path), "--listen", f"127.0.0.1:{port}"),
            f"127.0.0.1:{port}",
            "in use",
        )


def test_unknown_command_and_missing_journal(tmp_path):
    assert_one_line_error(agentlog("frobnicate"), "invalid choice")
    assert_one_line_error(agentlog("ls", "--logs", str(tmp_path)), "no journal")
    assert_one_line_error(agentlog("verify", "--logs", str(tmp_path)), "journal key")


def test_env_vars_configure_the_proxy(tmp_path):
    env = {**os.environ, "AGENTLOG_LOGS": str(tmp_path), "AGENTLOG_BODY_CAP": "nope"}
    result = subprocess.run(
        [sys.executable, "-m", "agentlog", "proxy"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert_one_line_error(result, "size")


def test_ca_prints_path_and_fingerprint(tmp_path):
    result = agentlog("ca", "--logs", str(tmp_path))
    assert result.returncode == 0
    path, fingerprint = result.stdout.strip().splitlines()
    assert path == str(tmp_path / "ca.crt")
    openssl = subprocess.run(
        ["openssl", "x509", "-in", path, "-noout", "-fingerprint", "-sha256"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert fingerprint.split("=", 1)[1] == openssl.stdout.strip().split("=", 1)[1]
    assert agentlog("ca", "--logs", str(tmp_path)).stdout == result.stdout  # reused


def test_ls_show_tail(proxy):
    curl(proxy, f"https://{UPSTREAM}/hello")
    curl(proxy, f"https://{UPSTREAM}/echo", "-d", "x=1")
    curl(proxy, "http://blocked.test/nope")  # https: refused at CONNECT, no path
    proxy.wait_for(lambda es: sum(e["event"] in ("response", "blocked") for e in es) == 3)
    logs = str(proxy.logs)

    listed = agentlog("ls", "--logs", logs).stdout.splitlines()
    assert len(listed) == 3
    assert "BLOCKED" in listed[0] and "/nope" in listed[0]  # newest first
    assert "200" in listed[2] and "/hello" in listed[2]

    only = agentlog("ls", "--domain", "*.TEST", "-n", "1", "--logs", logs).stdout.splitlines()
    assert len(only) == 1 and "/nope" in only[0]
    assert agentlog("ls", "--domain", "api.*", "--logs", logs).stdout == ""

    as_json = [
        json.loads(line) for line in agentlog("ls", "--json", "--logs", logs).stdout.splitlines()
    ]
    echo = next(x for x in as_json if x["path"] == "/echo")
    assert echo["response"]["status"] == 200

    shown = agentlog("show", echo["id"][:20], "--logs", logs)
    merged = json.loads(shown.stdout)
    assert merged["method"] == "POST" and merged["response"]["status"] == 200
    assert merged["request_body"] and merged["response"]["response_body"]
    assert agentlog("show", "ZZZZ", "--logs", logs).returncode == 1
    with_bodies = json.loads(agentlog("show", echo["id"], "--bodies", "--logs", logs).stdout)
    assert with_bodies["request_body_text"] == "x=1"
    assert json.loads(with_bodies["response"]["response_body_text"])["body"] == "x=1"

    follower = subprocess.Popen(
        [sys.executable, "-m", "agentlog", "tail", "-n", "0", "--logs", logs],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        curl(proxy, f"https://{UPSTREAM}/hello?after=tail")
        seen = [follower.stdout.readline() for _ in range(2)]
    finally:
        follower.kill()
    assert "request" in seen[0] and "/hello?after=tail" in seen[0]
    assert "response" in seen[1] and "200" in seen[1]


def test_terminal_output_escapes_agent_controlled_text():
    from agentlog.formats.text import summary

    hostile = {
        "event": "request",
        "id": "X",
        "method": "GET\x1b[2J",
        "scheme": "http",
        "domain": "evil\x1b]0;pwned\x07",
        "port": 80,
        "path": "/\r\x9b31m",
    }
    line = summary(hostile)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in line)
    assert "\\x1b]0;pwned\\x07" in line


def test_show_reads_only_well_formed_body_refs(tmp_path):
    from agentlog.journal.reader import read_body

    (tmp_path / "secret").write_text("not a body")
    for ref in ("../secret", "/etc/passwd", "bodies/ab/../../secret", "bodies/00/" + "1" * 64):
        assert read_body(tmp_path / "logs", ref) is None


def test_export_har(proxy, tmp_path):
    curl(
        proxy,
        f"https://{UPSTREAM}/echo?q=1",
        "-H",
        "Authorization: Bearer sekrit-token-1",
        "-d",
        "x=1",
    )
    curl(proxy, f"https://{UPSTREAM}/bytes?n=100000", "-o", "/dev/null")
    curl(proxy, "http://blocked.test/nope")  # https: refused at CONNECT, no path
    proxy.wait_for(lambda es: sum(e["event"] in ("response", "blocked") for e in es) == 3)
    out = tmp_path / "all.har"
    result = agentlog("export", "--har", "--logs", proxy.logs, "-o", out)
    assert result.returncode == 0, result.stderr
    har = json.loads(out.read_text())
    entries = har["log"]["entries"]
    assert har["log"]["version"] == "1.2" and len(entries) == 3
    echo, download, blocked = entries
    assert echo["request"]["url"] == f"https://{UPSTREAM}/echo?q=1"
    assert echo["request"]["queryString"] == [{"name": "q", "value": "1"}]
    assert echo["request"]["postData"]["text"] == "x=1"
    assert {"name": "authorization", "value": "[REDACTED]"} in echo["request"]["headers"]
    assert json.loads(echo["response"]["content"]["text"])["body"] == "x=1"
    assert download["response"]["content"]["size"] == 100000
    assert download["response"]["content"]["encoding"] == "base64"
    assert blocked["response"]["status"] == 0 and "allowlist" in blocked["response"]["statusText"]
    assert "sekrit-token-1" not in out.read_text()


def test_journal_key_kept_outside_the_logs_dir(tmp_path, upstream, upstream_ca):
    from tests.conftest import proxy_args
    from tests.harness import start_proxy

    key = tmp_path / "elsewhere" / "journal.key"
    key.parent.mkdir()
    env_proxy = start_proxy(
        tmp_path / "logs", *proxy_args(upstream, upstream_ca[1]), "--journal-key", str(key)
    )
    curl(env_proxy, f"https://{UPSTREAM}/hello")
    assert env_proxy.stop() == 0
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert not (tmp_path / "logs" / "journal.key").exists()
    assert agentlog("verify", "--logs", tmp_path / "logs", "--journal-key", key).returncode == 0
    assert agentlog("verify", "--logs", tmp_path / "logs").returncode == 2  # no key: no verdict
