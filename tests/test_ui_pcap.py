"""Packets through the UI: the same pcapng `agentlog pcap` writes, byte for byte."""

from __future__ import annotations

import pytest

from tests.conftest import UPSTREAM
from tests.harness import agentlog
from tests.netns import can_make_namespaces
from tests.test_capture import Captured, agent_curl
from tests.ui_harness import last_seq, start_ui

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not can_make_namespaces(), reason="needs root, ip, iptables"),
]


def test_pcap_downloads_are_byte_identical_to_the_cli(tmp_path, upstream, upstream_ca):
    with Captured(tmp_path, upstream, upstream_ca) as (ns, proxy):
        agent_curl(ns, proxy, "--http2", f"https://{UPSTREAM}/echo?pcap=1")
        agent_curl(ns, proxy, f"https://{UPSTREAM}/hello?pcap=2")
        proxy.wait_for(lambda es: sum(e["event"] == "response" for e in es) == 2)
    logs = proxy.logs
    wanted = next(e for e in proxy.events("request") if e["path"] == "/echo?pcap=1")
    ui = start_ui(logs)
    try:
        ui.wait_indexed(last_seq(logs))
        (row,) = [r for r in ui.get("/api/exchanges").json()["items"] if r["id"] == wanted["id"]]
        assert row["pcap_file"] == wanted["pcap_file"] and row["capture_id"]

        got = ui.get(f"/api/exchanges/{wanted['id']}/pcap")
        assert got.status_code == 200, got.text
        assert got.headers["content-type"] == "application/vnd.tcpdump.pcap"
        cli = tmp_path / "cli.pcapng"
        assert agentlog("pcap", wanted["id"], "--logs", logs, "-o", cli).returncode == 0
        assert got.content == cli.read_bytes()

        session = wanted["session"]
        got = ui.get(f"/api/sessions/{session}/pcap")
        assert got.status_code == 200, got.text
        cli = tmp_path / "session.pcapng"
        assert agentlog("pcap", "--session", session, "--logs", logs, "-o", cli).returncode == 0
        assert got.content == cli.read_bytes()

        captures = ui.get("/api/captures").json()["items"]
        assert {c["name"] for c in captures} == {p.name for p in logs.glob("capture_*.pcap")}
        first = captures[0]
        assert first["first_packet"] and first["first_packet"] <= first["last_packet"]
        assert ui.get(first["download"]).content == (logs / first["name"]).read_bytes()
        assert row["capture_id"] in {c["id"] for c in captures}
    finally:
        assert ui.stop() == 0
