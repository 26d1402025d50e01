"""Packet capture: the agent in a namespace, tcpdump on the host side of its veth.

Everything is checked the way a user would: with tshark, on the files the
records name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PLAIN, UPSTREAM, assert_every_request_closed_once, proxy_args
from tests.harness import RunningProxy, agentlog, start_proxy
from tests.netns import AgentNamespace, can_make_namespaces

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not can_make_namespaces(), reason="needs root, ip, iptables"),
]
# 8080 is a port Wireshark dissects as HTTP by default, so CONNECT tunnels decode.
PROXY_PORT = 8080


def tshark(*args: str | Path) -> str:
    result = subprocess.run(
        ["tshark", *map(str, args)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def agent_curl(ns: AgentNamespace, proxy: RunningProxy, *args: str) -> bytes:
    got = ns.run(
        "curl",
        "-sS",
        "--max-time",
        "20",
        "-x",
        proxy.url,
        "--cacert",
        str(proxy.ca),
        *args,
        check=False,
    )
    assert got.returncode == 0, got.stderr
    return got.stdout


class Captured:
    def __init__(self, tmp_path, upstream, upstream_ca, *extra: str) -> None:
        self.ns = AgentNamespace()
        self.tmp_path, self.upstream, self.ca, self.extra = tmp_path, upstream, upstream_ca, extra

    def __enter__(self) -> tuple[AgentNamespace, RunningProxy]:
        self.ns.__enter__()
        self.proxy = start_proxy(
            self.tmp_path / "logs",
            *proxy_args(self.upstream, self.ca[1]),
            "--capture",
            self.ns.host_if,
            *self.extra,
            listen=f"{self.ns.host_ip}:{PROXY_PORT}",
        )
        return self.ns, self.proxy

    def __exit__(self, *exc: object) -> None:
        try:
            assert self.proxy.stop() == 0
            assert_every_request_closed_once(self.proxy.events())
        finally:
            self.ns.__exit__()


def test_records_name_their_capture_and_keys_log_decrypts_them(tmp_path, upstream, upstream_ca):
    with Captured(tmp_path, upstream, upstream_ca) as (ns, proxy):
        agent_curl(ns, proxy, "--http1.1", "-H", "X-Custom: one", f"https://{UPSTREAM}/hello?n=1")
        agent_curl(
            ns, proxy, "--http2", "-H", "X-Custom: two", "-d", "x=2", f"https://{UPSTREAM}/echo?n=2"
        )
        agent_curl(ns, proxy, "-H", "X-Custom: three", f"http://{PLAIN}/echo?n=3")
        proxy.wait_for(lambda es: sum(e["event"] == "response" for e in es) == 3)
    logs = proxy.logs
    assert oct((logs / "keys.log").stat().st_mode & 0o777) == "0o600"
    requests = proxy.events("request")
    assert len(requests) == 3
    for request, (method, value) in zip(
        requests, [("GET", "one"), ("POST", "two"), ("GET", "three")], strict=True
    ):
        pcap = logs / request["pcap_file"]
        assert oct(pcap.stat().st_mode & 0o777) == "0o640"
        client_port = request["client"].rsplit(":", 1)[1]
        assert request["client"].startswith(ns.agent_ip + ":")
        assert request["agent_dst"] == f"{ns.host_ip}:{PROXY_PORT}"
        shown = tshark(
            "-r",
            pcap,
            "-o",
            f"tls.keylog_file:{logs / 'keys.log'}",
            "-V",
            "-Y",
            f"tcp.port == {client_port} && (http.request || http2.type == 1)",
        )
        assert method in shown and request["path"] in shown, shown[-2000:]
        assert "x-custom" in shown.lower() and value in shown


def test_per_request_export_decrypts_with_no_options(tmp_path, upstream, upstream_ca):
    with Captured(tmp_path, upstream, upstream_ca) as (ns, proxy):
        agent_curl(ns, proxy, "--http2", "-H", "X-Custom: wanted", f"https://{UPSTREAM}/echo?w=1")
        agent_curl(ns, proxy, "-H", "X-Custom: other", f"https://{UPSTREAM}/hello?other=1")
        proxy.wait_for(lambda es: sum(e["event"] == "response" for e in es) == 2)
        session = proxy.events("request")[0]["session"]
    wanted = next(e for e in proxy.events("request") if e["path"] == "/echo?w=1")
    out = tmp_path / "one.pcapng"
    result = agentlog("pcap", wanted["id"], "--logs", str(proxy.logs), "-o", str(out))
    assert result.returncode == 0, result.stderr

    shown = tshark("-r", out, "-V", "-Y", "http2.type == 1")  # no keylog option
    assert "/echo?w=1" in shown and "wanted" in shown
    assert "other" not in tshark("-r", out, "-V")
    ports = tshark("-r", out, "-T", "fields", "-e", "tcp.srcport", "-e", "tcp.dstport").split()
    client_port = wanted["client"].rsplit(":", 1)[1]
    assert set(ports) == {client_port, str(PROXY_PORT)}  # that connection and no other

    whole = tmp_path / "session.pcapng"
    result = agentlog("pcap", "--session", session, "--logs", str(proxy.logs), "-o", str(whole))
    assert result.returncode == 0, result.stderr
    decrypted = tshark("-r", whole, "-Y", "http || http2")
    assert "/echo?w=1" in decrypted and "/hello?other=1" in decrypted


def capture_events(proxy: RunningProxy, action: str) -> list[dict]:
    return [e for e in proxy.events("capture") if e["action"] == action]


def test_rotation_by_size_loses_nothing(tmp_path, upstream, upstream_ca):
    with Captured(tmp_path, upstream, upstream_ca, "--capture-size", "1M") as (ns, proxy):
        for i in range(6):
            agent_curl(ns, proxy, "-o", "/dev/null", f"https://{UPSTREAM}/bytes?n=700000&i={i}")
        proxy.wait_for(lambda es: sum(e["event"] == "response" for e in es) == 6)
    files = sorted(proxy.logs.glob("capture_*.pcap"))
    assert len(files) >= 3
    opened = [e["file"] for e in capture_events(proxy, "open")]
    assert sorted(opened) == [f.name for f in files]
    counts = [len(tshark("-r", f, "-T", "fields", "-e", "frame.number").split()) for f in files]
    stopped = capture_events(proxy, "stop")[-1]
    assert sum(counts) == stopped["captured"]  # every packet in exactly one file
    assert stopped["dropped_by_kernel"] == 0
    for f in files:
        assert f.stat().st_size <= 1024 * 1024 + 70000  # a file may end with one large packet
    for request in proxy.events("request"):
        port = request["client"].rsplit(":", 1)[1]
        syn = tshark(
            "-r",
            proxy.logs / request["pcap_file"],
            "-Y",
            f"tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.srcport == {port}",
        )
        assert syn.strip(), f"{request['pcap_file']} lacks the SYN of {request['path']}"


def test_tcpdump_killed_is_restarted_and_the_gap_recorded(tmp_path, upstream, upstream_ca):
    with Captured(tmp_path, upstream, upstream_ca) as (ns, proxy):
        agent_curl(ns, proxy, f"https://{UPSTREAM}/hello?before=1")
        first = capture_events(proxy, "start")[0]
        os.kill(first["pid"], signal.SIGKILL)
        events = proxy.wait_for(
            lambda es: any(e["event"] == "capture" and e["action"] == "restart" for e in es)
        )
        restart = next(e for e in events if e.get("action") == "restart")
        assert restart["pid"] != first["pid"]
        died = [e for e in capture_events(proxy, "stop") if "exited" in e["reason"]]
        assert died and died[0]["seq"] < restart["seq"]
        time.sleep(0.2)
        agent_curl(ns, proxy, f"https://{UPSTREAM}/hello?after=1")
        proxy.wait_for(lambda es: sum(e["event"] == "response" for e in es) == 2)
    before = proxy.exchange("/hello?before")[0]
    after = proxy.exchange("/hello?after")[0]
    newest = capture_events(proxy, "open")[-1]
    assert newest["seq"] > restart["seq"]
    assert after["pcap_file"] == newest["file"] != before["pcap_file"]
    shown = tshark(
        "-r",
        proxy.logs / after["pcap_file"],
        "-o",
        f"tls.keylog_file:{proxy.logs / 'keys.log'}",
        "-V",
        "-Y",
        "http2.type == 1",
    )
    assert "/hello?after=1" in shown
    for name in {before["pcap_file"], after["pcap_file"]}:  # both files complete and readable
        tshark("-r", proxy.logs / name, "-c", "1")


def test_capture_refuses_to_start_blind(tmp_path):
    no_tcpdump = {**os.environ, "PATH": os.path.dirname(sys.executable)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentlog",
            "proxy",
            "--logs",
            str(tmp_path),
            "--listen",
            "127.0.0.1:0",
            "--capture",
            "lo",
        ],
        env=no_tcpdump,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "tcpdump" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = agentlog(
        "proxy", "--logs", str(tmp_path), "--listen", "127.0.0.1:0", "--capture", "no-such-if0"
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-if0" in lines[0], result.stderr
    listening = [
        json.loads(line)
        for line in (tmp_path / "requests.jsonl").read_text().splitlines()
        if '"listening"' in line
    ]
    assert not listening  # it never started serving


def test_rotation_by_time(tmp_path, upstream, upstream_ca):
    with Captured(tmp_path, upstream, upstream_ca, "--capture-every", "1s") as (ns, proxy):
        for i in range(3):
            agent_curl(ns, proxy, f"https://{UPSTREAM}/hello?t={i}")
            time.sleep(1.1)
        proxy.wait_for(lambda es: sum(e["event"] == "response" for e in es) == 3)
    requests = proxy.events("request")
    assert len({r["pcap_file"] for r in requests}) == 3  # a new file each second of traffic
    for request in requests:
        port = request["client"].rsplit(":", 1)[1]
        assert tshark("-r", proxy.logs / request["pcap_file"], "-Y", f"tcp.srcport == {port}")
