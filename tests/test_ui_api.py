"""agentlog ui's JSON API over a journal the real proxy wrote, through the real UI process."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import API, BLOCKED, DOWN, UPSTREAM, proxy_args
from tests.harness import RunningProxy, curl, start_proxy
from tests.ui_harness import RunningUI, last_seq, start_ui

pytestmark = pytest.mark.timeout(180)
MARKER = "zebra7quokka"  # a word only one request body holds


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, upstream, upstream_ca) -> Iterator[tuple[RunningProxy, RunningUI]]:
    logs = tmp_path_factory.mktemp("ui") / "logs"
    proxy = start_proxy(logs, *proxy_args(upstream, upstream_ca[1]))
    try:
        for i in range(5):
            assert curl(proxy, f"https://{UPSTREAM}/hello?i={i}").returncode == 0
        body = json.dumps({"marker": MARKER, "nested": {"n": 1}})
        post = curl(
            proxy, f"https://{API}/echo", "-H", "content-type: application/json", "-d", body
        )
        assert post.returncode == 0
        curl(proxy, f"https://{UPSTREAM}/status/404")
        curl(proxy, f"https://{UPSTREAM}/status/503")
        curl(proxy, f"http://{BLOCKED}/nope")  # plain HTTP: judged per request, path and all
        curl(proxy, f"https://{DOWN}/gone")
        proxy.wait_for(lambda ev: sum(e["event"] != "request" for e in ev) >= 10)
        ui = start_ui(logs)
        try:
            ui.wait_indexed(last_seq(logs))
            yield proxy, ui
        finally:
            assert ui.stop() == 0
    finally:
        proxy.stop()


def all_rows(ui: RunningUI, **params) -> list[dict]:
    rows, cursor = [], None
    while True:
        got = ui.get("/api/exchanges", **params, **({"before": cursor} if cursor else {}))
        assert got.status_code == 200, got.text
        page = got.json()
        rows += page["items"]
        if page["next"] is None:
            return rows
        cursor = page["next"]


def test_list_is_newest_first_and_pages_cover_it_once(recorded):
    proxy, ui = recorded
    requests = [e for e in proxy.events() if e["event"] == "request"]
    everything = ui.get("/api/exchanges", limit=1000).json()
    assert [r["id"] for r in everything["items"]] == [e["id"] for e in reversed(requests)]
    assert everything["next"] is None
    paged = all_rows(ui, limit=3)
    assert [r["id"] for r in paged] == [r["id"] for r in everything["items"]]


def test_rows_say_what_happened(recorded):
    _, ui = recorded
    rows = {(r["domain"], r["path"]): r for r in all_rows(ui)}
    assert rows[(UPSTREAM, "/hello?i=0")]["outcome"] == "200"
    assert rows[(UPSTREAM, "/hello?i=0")]["kind"] == "request"
    assert rows[(UPSTREAM, "/status/404")]["status"] == 404
    assert rows[(BLOCKED, "/nope")]["outcome"] == "BLOCKED"
    assert rows[(BLOCKED, "/nope")]["kind"] == "blocked"
    assert rows[(DOWN, "/gone")]["kind"] == "error"
    post = rows[(API, "/echo")]
    assert post["method"] == "POST" and post["request_bytes"] > 0 and post["duration_ms"] > 0


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"domain": "api.*"}, {"/echo"}),
        ({"domain": "*.TEST", "method": "POST"}, {"/echo"}),
        ({"status": "5xx"}, {"/status/503"}),
        ({"status": "404,503"}, {"/status/404", "/status/503"}),
        ({"kind": "blocked"}, {"/nope"}),
        ({"kind": "error,blocked"}, {"/nope", "/gone"}),
        ({"q": MARKER}, {"/echo"}),
        ({"q": f"{MARKER[:6]} quokka"}, set()),  # every term must occur
        ({"q": MARKER[:6]}, {"/echo"}),  # a term matches from a word's start
        ({"q": "i=3"}, {"/hello?i=3"}),
    ],
)
def test_filters_narrow_the_list(recorded, params, expected):
    _, ui = recorded
    assert {r["path"] for r in all_rows(ui, **params)} == expected


def test_time_range_and_session(recorded):
    proxy, ui = recorded
    requests = [e for e in proxy.events() if e["event"] == "request"]
    middle = requests[len(requests) // 2]["timestamp"]
    newer = all_rows(ui, since=middle)
    older = all_rows(ui, until=middle)
    assert len(newer) + len(older) == len(requests)
    assert all(r["timestamp"] >= middle for r in newer)
    assert len(all_rows(ui, session=requests[0]["session"])) == len(requests)
    assert all_rows(ui, session="nope") == []


def test_bad_filter_values_are_4xx(recorded):
    _, ui = recorded
    assert ui.get("/api/exchanges", status="6xx").status_code in (400, 422)
    assert ui.get("/api/exchanges", before="../x").status_code == 422
    assert ui.get("/api/exchanges", since="yesterday").status_code == 422
    assert ui.get("/api/exchanges", limit=0).status_code == 422


def test_exchange_detail_has_headers_bodies_timings_and_addresses(recorded):
    _, ui = recorded
    (row,) = all_rows(ui, q=MARKER)
    detail = ui.get(f"/api/exchanges/{row['id']}").json()
    assert detail["row"] == row
    assert detail["exchange"]["headers"]["content-type"] == "application/json"
    assert detail["exchange"]["response"]["status"] == 200
    request, response = detail["bodies"]["request"], detail["bodies"]["response"]
    assert request["kind"] == "json" and json.loads(request["text"])["marker"] == MARKER
    assert response["kind"] == "json" and json.loads(response["text"])["method"] == "POST"
    assert detail["timings"]["duration_ms"] > 0
    assert detail["addresses"]["client"].startswith("127.0.0.1:")
    download = ui.get(request["download"])
    assert download.headers["content-type"] == "application/octet-stream"
    assert "attachment" in download.headers["content-disposition"]
    assert json.loads(download.content)["marker"] == MARKER


def test_har_of_a_filter(recorded):
    _, ui = recorded
    got = ui.get("/api/har", domain=UPSTREAM)
    assert got.status_code == 200 and "attachment" in got.headers["content-disposition"]
    urls = [e["request"]["url"] for e in got.json()["log"]["entries"]]
    assert urls == [
        f"https://{UPSTREAM}{r['path']}" for r in reversed(all_rows(ui, domain=UPSTREAM))
    ]


def test_domains_and_sessions(recorded):
    proxy, ui = recorded
    domains = {d["domain"]: d for d in ui.get("/api/domains").json()["items"]}
    assert domains[UPSTREAM]["requests"] == 7
    assert domains[BLOCKED]["blocked"] == 1
    assert domains[DOWN]["errors"] == 1
    assert domains[UPSTREAM]["response_bytes"] > 0
    (session,) = ui.get("/api/sessions").json()["items"]
    assert session["session"] == proxy.events("request")[0]["session"]
    assert session["exchanges"] == len(proxy.events("request"))


def test_other_events_are_kept(recorded):
    _, ui = recorded
    kinds = {e["event"] for e in ui.get("/api/events").json()["items"]}
    assert "journal" in kinds


def read_sse(response: httpx.Response, until, timeout: float) -> list[tuple[str, str, dict]]:
    """(event, id, data) messages until `until(messages)` holds or `timeout` passes."""
    messages: list[tuple[str, str, dict]] = []
    fields: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    for line in response.iter_lines():
        if line.startswith(("event:", "id:", "data:")):
            name, _, value = line.partition(":")
            fields[name] = value.strip()
        elif line == "" and "data" in fields:
            messages.append(
                (fields.get("event", ""), fields.get("id", ""), json.loads(fields["data"]))
            )
            fields = {}
            if until(messages):
                return messages
        if time.monotonic() > deadline:
            break
    return messages


def test_live_feed_shows_a_new_request_and_resumes_from_last_event_id(recorded):
    proxy, ui = recorded
    before = ui.status()["indexed_seq"]
    started = time.monotonic()
    with ui.client() as client, client.stream("GET", "/api/live", timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        threading.Timer(0.3, curl, (proxy, f"https://{UPSTREAM}/hello?live=1")).start()
        got = read_sse(
            response,
            lambda m: any(
                d.get("path") == "/hello?live=1" and d["state"] == "closed" for _, _, d in m
            ),
            timeout=10,
        )
    closed = [d for kind, _, d in got if kind == "exchange" and d["path"] == "/hello?live=1"]
    assert closed and closed[-1]["outcome"] == "200", got
    assert time.monotonic() - started < 5
    assert all(int(seq) > before for _, seq, _ in got)
    # A reconnect names the last id it saw: everything after it comes again, in order.
    headers = {"Last-Event-ID": str(before)}
    with ui.client() as client, client.stream("GET", "/api/live", headers=headers) as response:
        again = read_sse(
            response, lambda m: any(d.get("path") == "/hello?live=1" for _, _, d in m), 10
        )
    ids = [int(seq) for _, seq, _ in again]
    assert ids == sorted(ids) and ids[0] > before
    assert any(d.get("path") == "/hello?live=1" and d["state"] == "closed" for _, _, d in again)


def test_live_feed_takes_the_list_filters(recorded):
    proxy, ui = recorded
    start = max(0, ui.status()["indexed_seq"] - 0)
    curl(proxy, f"https://{API}/echo?filtered=1")
    curl(proxy, f"https://{UPSTREAM}/hello?filtered=1")
    ui.wait_indexed(last_seq(proxy.logs))
    params = {"domain": API, "last_event_id": start}
    with ui.client() as client, client.stream("GET", "/api/live", params=params) as response:
        got = read_sse(
            response, lambda m: any(d.get("path") == "/echo?filtered=1" for _, _, d in m), 10
        )
    assert {d["domain"] for kind, _, d in got if kind == "exchange"} == {API}
