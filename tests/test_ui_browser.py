"""The UI page in a real browser (Debian's chromium, driven by Playwright) against a
live proxy and a live `agentlog ui`: what a person sees and clicks.

Every test fails on a dialog, an uncaught page error or a CSP violation.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.browser import have_browser
from tests.conftest import API, PLAIN, UPSTREAM, free_port, proxy_args
from tests.fakes.certs import make_ca
from tests.fakes.services import FakeServices
from tests.harness import RunningProxy, agentlog, curl, start_proxy
from tests.netns import AgentNamespace, can_make_namespaces
from tests.ui_harness import RunningUI, start_ui

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not have_browser(), reason="needs playwright and /usr/bin/chromium"),
]

if have_browser():
    from playwright.sync_api import Browser, Page, expect

ROWS = "#rows tr.row"
DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, upstream, upstream_ca) -> Iterator[tuple[RunningProxy, RunningUI]]:
    """One proxy and one UI on its logs, shared by the tests of this module."""
    logs = tmp_path_factory.mktemp("ui") / "logs"
    proxy = start_proxy(logs, *proxy_args(upstream, upstream_ca[1]))
    try:
        ui = start_ui(logs)
    except BaseException:
        proxy.stop()
        raise
    yield proxy, ui
    ui.stop()
    assert proxy.stop() == 0


def row_ids(page: Page) -> list[str]:
    return page.locator(ROWS).evaluate_all("rows => rows.map(r => r.getAttribute('data-id'))")


def request_id(proxy: RunningProxy, path: str) -> str:
    return proxy.exchange(path)[0]["id"]


def answered(proxy: RunningProxy, *paths: str) -> None:
    """Wait until each of these requests has its closing event."""

    def done(events: list[dict]) -> bool:
        ids = {e["id"] for e in events if e["event"] == "request" and e["path"] in paths}
        closed = {e["id"] for e in events if e["event"] in ("response", "error", "blocked")}
        return len(ids) == len(paths) and ids <= closed

    proxy.wait_for(done)


# -- the list ----------------------------------------------------------------------


def test_lists_newest_first_and_new_requests_appear_live(stack, page: Page) -> None:
    proxy, ui = stack
    paths = [f"/hello?order={i}" for i in range(3)]
    for path in paths:
        curl(proxy, f"https://{UPSTREAM}{path}")
    answered(proxy, *paths)
    newest_first = [e["id"] for e in reversed(proxy.events("request"))]

    page.goto(ui.url)
    expect(page.locator(ROWS)).to_have_count(len(newest_first))
    assert row_ids(page) == newest_first
    assert "token" not in page.url  # signed in by cookie; the token left the address bar

    page.evaluate("() => { window.sameDocument = true }")
    curl(proxy, f"https://{UPSTREAM}/echo?live=1", "-d", "x")
    live_id = request_id(proxy, "/echo?live=1")
    row = page.locator(f"{ROWS}[data-id='{live_id}']")
    expect(row).to_be_visible(timeout=2000)
    expect(row.locator(".outcome")).to_have_text("200", timeout=2000)  # updated in place
    assert row_ids(page)[0] == live_id
    assert page.evaluate("() => window.sameDocument") is True  # no reload happened


def test_live_falls_back_to_polling_when_the_feed_drops(stack, page: Page) -> None:
    proxy, ui = stack
    page.route("**/api/live*", lambda route: route.abort())
    page.goto(ui.url)
    expect(page.locator("#live")).to_contain_text("polling")
    curl(proxy, f"https://{UPSTREAM}/hello?polled=1")
    polled_id = request_id(proxy, "/hello?polled=1")
    expect(page.locator(f"{ROWS}[data-id='{polled_id}']")).to_be_visible(timeout=7000)


def test_expanding_a_row_shows_its_headers_and_json_body(stack, page: Page) -> None:
    proxy, ui = stack
    body = {"model": "claude-test", "messages": [{"role": "user", "content": "hello there"}]}
    curl(
        proxy,
        f"https://{API}/echo?expand=1",
        "-H",
        "X-Trace-Id: trace-7f3a",
        "-H",
        "content-type: application/json",
        "--data",
        json.dumps(body),
    )
    answered(proxy, "/echo?expand=1")
    wanted = request_id(proxy, "/echo?expand=1")

    page.goto(ui.url)
    page.locator(f"{ROWS}[data-id='{wanted}']").click()
    detail = page.locator("tr.detail-row")
    request_pane, response_pane = detail.locator(".pane").nth(0), detail.locator(".pane").nth(1)
    expect(request_pane.locator("table.headers")).to_contain_text("x-trace-id")
    expect(request_pane.locator("table.headers")).to_contain_text("trace-7f3a")
    tree = request_pane.locator(".json-tree")
    for text in ('"model"', '"claude-test"', '"messages"', '"hello there"'):
        expect(tree).to_contain_text(text)
    expect(response_pane.locator("table.headers")).to_contain_text("application/json")
    expect(response_pane.locator(".json-tree")).to_contain_text('"/echo?expand=1"')
    for label in ("ttfb", "duration", "client", "upstream dst"):
        expect(detail.locator("dl.facts")).to_contain_text(label)

    messages = tree.locator("details.j-node").nth(1)  # "messages": [...]
    expect(messages).to_have_attribute("open", "")
    messages.locator("> summary").click()
    expect(messages).not_to_have_attribute("open", "")
    expect(tree.get_by_text('"hello there"')).to_be_hidden()

    assert parse_qs(urlsplit(page.url).query)["open"] == [wanted]  # a link to this exchange
    page.reload()
    expect(page.locator("tr.detail-row")).to_contain_text("trace-7f3a")

    # The keyboard: Esc closes, j/k move, Enter opens, / goes to the search box.
    page.keyboard.press("Escape")
    expect(page.locator("tr.detail-row")).to_have_count(0)
    position = row_ids(page).index(wanted)
    page.locator(ROWS).first.click()
    page.keyboard.press("Escape")
    for _ in range(position + 1):
        page.keyboard.press("j")
    page.keyboard.press("k")
    expect(page.locator(f"{ROWS}.selected")).to_have_attribute("data-id", wanted)
    page.keyboard.press("Enter")
    expect(page.locator("tr.detail-row")).to_contain_text("trace-7f3a")
    page.keyboard.press("/")
    expect(page.locator("#q")).to_be_focused()


def test_problems_stand_out_and_say_what_happened(stack, page: Page) -> None:
    proxy, ui = stack
    curl(proxy, "http://blocked.test/problems")  # not on the allowlist (plain HTTP: path shown)
    curl(proxy, "https://down.test/problems")  # nothing listens there
    curl(proxy, f"https://{UPSTREAM}/problems", trust_ca=False)  # the client refuses our CA
    curl(proxy, f"https://{UPSTREAM}/bytes?n=3000")
    answered(proxy, "/bytes?n=3000")
    proxy.wait_for(lambda es: any(e["event"] == "tls_failed" for e in es))
    blocked, error = (
        e["id"] for e in proxy.events("request") if e["path"] == "/problems"
    )  # blocked.test was asked first
    refused = proxy.events("tls_failed")[-1]["id"]

    page.goto(ui.url)
    for id, outcome, says in (
        (blocked, "BLOCKED", "not on the allowlist"),
        (error, "ERROR", "error"),
        (refused, "TLS-FAIL", "tls error"),
    ):
        row = page.locator(f"{ROWS}[data-id='{id}']")
        expect(row).to_have_class(re.compile(r"\balarming\b"))
        expect(row.locator(".outcome")).to_have_text(outcome)
        row.click()
        expect(page.locator("tr.detail-row dl.facts dd.bad").first).to_be_visible()
        expect(page.locator("tr.detail-row dl.facts")).to_contain_text(says)

    binary = page.locator(ROWS, has_text="/bytes?n=3000")
    expect(binary).not_to_have_class(re.compile(r"\balarming\b"))
    binary.click()
    response = page.locator("tr.detail-row .pane").nth(1)
    expect(response.locator(".body-binary")).to_contain_text("binary")
    expect(response.locator(".body-head")).to_contain_text("application/octet-stream")
    expect(response.locator(".body-head")).to_contain_text("3.0 kB")


# -- filters, search, views ----------------------------------------------------------


def test_filters_and_search_narrow_the_list_and_survive_a_reload(stack, page: Page) -> None:
    proxy, ui = stack
    curl(proxy, f"https://{UPSTREAM}/hello?filter=1")
    curl(proxy, f"https://{API}/echo?filter=2", "-H", "content-type: application/json",
         "-d", json.dumps({"note": "zebra crossing"}))  # fmt: skip
    curl(proxy, f"https://{API}/echo?filter=3", "-d", "nothing to see")
    answered(proxy, "/hello?filter=1", "/echo?filter=2", "/echo?filter=3")

    page.goto(ui.url)
    expect(page.locator(ROWS, has_text=UPSTREAM).first).to_be_visible()
    page.fill("#domain", "api.*")
    expect(page.locator(ROWS, has_text=UPSTREAM)).to_have_count(0)
    expect(page.locator(ROWS, has_text="/echo?filter=3")).to_have_count(1)
    page.fill("#q", "zebra")
    expect(page.locator(ROWS)).to_have_count(1)
    expect(page.locator(ROWS)).to_contain_text("/echo?filter=2")
    assert parse_qs(urlsplit(page.url).query) == {"domain": ["api.*"], "q": ["zebra"]}

    page.reload()
    expect(page.locator("#domain")).to_have_value("api.*")
    expect(page.locator("#q")).to_have_value("zebra")
    expect(page.locator(ROWS)).to_have_count(1)
    expect(page.locator(ROWS)).to_contain_text("/echo?filter=2")

    with page.expect_download() as download:
        page.click("#har")
    har = json.loads(Path(download.value.path()).read_text())
    assert [e["request"]["url"] for e in har["log"]["entries"]] == [f"https://{API}/echo?filter=2"]

    bookmark = page.context.new_page()  # a shared link, in a browser already signed in
    bookmark.goto(f"{ui.base}/?domain={UPSTREAM}")
    expect(bookmark.locator(ROWS, has_text="/hello?filter=1")).to_have_count(1)
    expect(bookmark.locator(ROWS, has_text=API)).to_have_count(0)


def test_domains_view_counts_each_domain_and_filters_by_it(stack, page: Page) -> None:
    proxy, ui = stack
    curl(proxy, f"https://{API}/hello?domains=1")
    curl(proxy, "http://blocked.test/domains")  # not on the allowlist (plain HTTP: path shown)
    answered(proxy, "/hello?domains=1", "/domains")
    requests = proxy.events("request")

    page.goto(ui.url)
    page.click("button.tab[data-view='domains']")
    table = page.locator("#view-domains table")
    api_row = table.locator("tr", has_text=API)
    expect(api_row).to_contain_text(str(sum(e["domain"] == API for e in requests)))
    expect(table.locator("tr.alarming", has_text="blocked.test")).to_have_count(1)
    api_row.click()
    expect(page.locator("#domain")).to_have_value(API)
    expect(page.locator("#view-requests")).to_be_visible()
    expect(page.locator(ROWS, has_text="/hello?domains=1")).to_have_count(1)
    expect(page.locator(ROWS, has_text=UPSTREAM)).to_have_count(0)


# -- hostile input -------------------------------------------------------------------

SCRIPT = "<script>alert('xss-script')</script>"
IMG = "<img src=x onerror=alert('xss-img')>"
ATTR = "\"'><svg onload=alert('xss-attr')>"
JS_URL = "javascript:alert('xss-url')"


def raw_request(proxy: RunningProxy, head: str, body: bytes = b"") -> None:
    """One request exactly as written (curl would tidy it up), through the proxy."""
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        sock.settimeout(10)
        while chunk := sock.recv(65536):
            if b"\r\n\r\n" in chunk:
                break


def test_hostile_input_renders_as_text(stack, page: Page) -> None:
    proxy, ui = stack
    hostile_path = "/x<script>alert('xss-path')</script>/<svg/onload=alert('xss-path2')>"
    hostile_query = (
        "/echo?q=\"><img/src=x/onerror=alert('xss-query')>&next=javascript:alert('xss-q')"
    )
    raw_request(proxy, f"GET http://{PLAIN}{hostile_path} HTTP/1.1\r\nHost: {PLAIN}\r\n")
    raw_request(proxy, f"GET http://{PLAIN}{hostile_query} HTTP/1.1\r\nHost: {PLAIN}\r\n")
    document = {SCRIPT: IMG, "link": JS_URL, "attr": ATTR, "list": [SCRIPT, {"deep": IMG}]}
    body = json.dumps(document).encode()
    raw_request(
        proxy,
        f"POST http://{PLAIN}/echo?hostile=body HTTP/1.1\r\nHost: {PLAIN}\r\n"
        f"X-Evil: {IMG}\r\nX-Quote: {ATTR}\r\nReferer: {JS_URL}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n",
        body,
    )
    # The Host header of an absolute-form request is the name recorded (then refused).
    raw_request(proxy, f"GET http://{PLAIN}/hostile-host HTTP/1.1\r\nHost: {IMG}\r\n")
    answered(proxy, hostile_path, hostile_query, "/echo?hostile=body", "/hostile-host")

    page.goto(ui.url)
    for path in (hostile_path, hostile_query):
        row = page.locator(f"{ROWS}[data-id='{request_id(proxy, path)}']")
        expect(row.locator("td.path")).to_have_text(path)
    host_row = page.locator(f"{ROWS}[data-id='{request_id(proxy, '/hostile-host')}']")
    expect(host_row.locator("td.host")).to_have_text(IMG)
    expect(host_row).to_have_class(re.compile(r"\balarming\b"))

    body_row = page.locator(f"{ROWS}[data-id='{request_id(proxy, '/echo?hostile=body')}']")
    body_row.click()
    detail = page.locator("tr.detail-row")
    headers = detail.locator(".pane").first.locator("table.headers")
    for value in (IMG, ATTR, JS_URL):
        expect(headers).to_contain_text(value)
    tree = detail.locator(".pane").first.locator(".json-tree")
    for value in (SCRIPT, IMG, JS_URL, "\\\"'><svg onload"):  # JSON strings, as JSON shows them
        expect(tree).to_contain_text(value)
    expect(detail.locator(".pane").nth(1).locator(".json-tree")).to_contain_text(IMG)
    host_row.click()
    expect(page.locator("tr.detail-row")).to_contain_text(IMG)
    page.click("button.tab[data-view='domains']")
    expect(page.locator("#view-domains")).to_contain_text(IMG)
    page.click("button.tab[data-view='requests']")
    page.fill("#q", "xss")
    expect(page.locator(ROWS).first).to_be_visible()
    page.wait_for_timeout(300)  # a handler that would fire (onerror, onload) has by now

    injected = page.evaluate(
        """() => {
        const all = [...document.querySelectorAll('*')];
        return {
          scripts: [...document.scripts].map(s => s.getAttribute('src')),
          foreign: all.filter(el => ['IMG', 'SVG', 'svg', 'IFRAME', 'OBJECT', 'EMBED', 'IMAGE']
                                      .includes(el.tagName)).length,
          handlers: all.filter(el => [...el.attributes].some(a => a.name.startsWith('on'))).length,
          links: [...document.querySelectorAll('[href]')].map(el => el.getAttribute('href'))
                   .filter(h => !['/api/', '/?', '/static/'].some(ours => h.startsWith(ours))),
        };
    }"""
    )
    assert injected == {"scripts": ["/static/app.js"], "foreign": 0, "handlers": 0, "links": []}


# -- the page's pure parts, in the page ---------------------------------------------------

FILTER_VALUES = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


# Each example is a browser context: a few large ones, and no slow shrinking (the
# assertion names the failing states).
@settings(
    max_examples=4,
    deadline=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=list(HealthCheck),
)
@given(
    states=st.lists(
        st.fixed_dictionaries(
            {"view": st.sampled_from(["requests", "domains", "captures"])},
            optional={name: FILTER_VALUES for name in ("q", "domain", "method", "session")},
        ),
        min_size=50,
        max_size=50,
    )
)
def test_url_state_round_trips_and_links_stay_ours(stack, browser: Browser, states) -> None:
    """Any filter text survives the URL; the page refuses links and attributes it did
    not build, whatever text reaches them (one page, many examples at once)."""
    _, ui = stack
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(ui.url)
        result = page.evaluate(
            """async (states) => {
            const q = await import('/static/query.js');
            const dom = await import('/static/dom.js');
            const refused = (attrs) => {
              try { dom.h('a', attrs); return false; } catch { return true; }
            };
            return {
              states: states.map(({view, ...filters}) => {
                const trimmed = Object.fromEntries(Object.entries(filters)
                  .map(([k, v]) => [k, v.trim()]).filter(([, v]) => v));
                const back = q.readState(q.writeState({view, open: null, filters: trimmed}));
                const same = (a, b) => Object.keys(a).length === Object.keys(b).length
                  && Object.keys(a).every((k) => a[k] === b[k]);
                return back.view === view && back.open === null && same(back.filters, trimmed);
              }),
              refused: [
                {href: 'javascript:alert(1)'}, {href: ' /api/x'}, {href: '//evil.test/api/'},
                {href: 'https://evil.test/'}, {onclick: 'alert(1)'}, {style: 'color:red'},
                {src: '/api/x'}, {srcdoc: '<script>'},
              ].map(refused),
              allowed: [{href: '/api/exchanges/X/pcap'}, {href: '/?open=X'}, {title: '"><x>'}]
                .map(refused),
            };
        }""",
            states,
        )
    finally:
        context.close()
    assert all(result["states"]), [
        s for s, ok in zip(states, result["states"], strict=True) if not ok
    ]
    assert all(result["refused"]) and not any(result["allowed"])


# -- packets ------------------------------------------------------------------------


@pytest.mark.skipif(not can_make_namespaces(), reason="needs root, ip, iptables")
def test_pcap_downloaded_through_the_page_is_what_agentlog_pcap_writes(
    tmp_path, upstream, upstream_ca, page: Page
) -> None:
    from tests.test_capture import Captured, agent_curl

    with Captured(tmp_path, upstream, upstream_ca) as (ns, proxy):
        agent_curl(ns, proxy, "--http2", "-d", "x=1", f"https://{UPSTREAM}/echo?pcap=1")
        agent_curl(ns, proxy, f"https://{UPSTREAM}/hello?pcap=2")
        answered(proxy, "/echo?pcap=1", "/hello?pcap=2")
    wanted = request_id(proxy, "/echo?pcap=1")
    session = proxy.events("request")[0]["session"]

    ui = start_ui(proxy.logs)
    try:
        page.goto(ui.url)
        page.locator(f"{ROWS}[data-id='{wanted}']").click()
        with page.expect_download() as one:
            page.locator("tr.detail-row a.packets").click()
        with page.expect_download() as whole:
            page.locator("tr.detail-row a", has_text="session packets").click()
        page.click("button.tab[data-view='captures']")
        capture = proxy.events("request")[0]["pcap_file"]
        expect(page.locator("#view-captures tr", has_text=capture)).to_have_count(1)
        with page.expect_download() as file:
            page.locator("#view-captures tr", has_text=capture).locator("a").click()
        got = {
            "one": Path(one.value.path()).read_bytes(),
            "whole": Path(whole.value.path()).read_bytes(),
            "file": Path(file.value.path()).read_bytes(),
        }
    finally:
        ui.stop()

    for name, args in (("one", [wanted]), ("whole", ["--session", session])):
        out = tmp_path / f"{name}.pcapng"
        result = agentlog("pcap", *args, "--logs", str(proxy.logs), "-o", str(out))
        assert result.returncode == 0, result.stderr
        assert got[name] == out.read_bytes(), f"{name}: the page's pcap differs from agentlog pcap"
    assert got["file"] == (proxy.logs / capture).read_bytes()


# -- the README's screenshot ------------------------------------------------------------


def test_screenshot_of_realistic_traffic(tmp_path, page: Page) -> None:
    """The page after a short agent run (captured, where namespaces can be made);
    AGENTLOG_UI_SCREENSHOT=1 writes docs/ui.png."""
    ca = make_ca("agentlog screenshot CA")
    ca_file = ca.write(tmp_path)
    with FakeServices(ca, tmp_path) as services, contextlib.ExitStack() as cleanup:
        refused = free_port()  # nothing listens: the connection is refused
        args = ["--upstream-ca", str(ca_file), *services.proxy_args()]
        args += ["--allow", "sentry.io", "--route", f"sentry.io=127.0.0.1:{refused}"]
        if can_make_namespaces():
            ns = cleanup.enter_context(AgentNamespace())
            proxy = start_proxy(
                tmp_path / "logs", *args, "--capture", ns.host_if, listen=f"{ns.host_ip}:8080"
            )

            def fetch(url: str, *options: str) -> None:
                agent = ["curl", "-sS", "--max-time", "20", "-x", proxy.url, "--cacert"]
                ns.run(*agent, str(proxy.ca), *options, url, check=False)
        else:
            proxy = start_proxy(tmp_path / "logs", *args)

            def fetch(url: str, *options: str) -> None:
                curl(proxy, url, *options)

        cleanup.callback(proxy.stop)
        agent_run(proxy, fetch)
        ui = start_ui(proxy.logs)
        cleanup.callback(ui.stop)
        page.goto(ui.url)
        rows = page.locator(ROWS)
        opened = proxy.events("request") + proxy.events("tcp")  # the refused CONNECT: a tcp row
        expect(rows).to_have_count(len(opened))
        rows.filter(has_text="/v1/messages").nth(1).click()
        # A model call opens as its conversation; the screenshot shows its headers and bodies.
        page.locator("tr.detail-row .view-switch button", has_text="headers and bodies").click()
        expect(page.locator("tr.detail-row .json-tree").first).to_be_visible()
        page.mouse.move(0, 0)
        shot = page.screenshot()
    alarming = page.locator(f"{ROWS}.alarming")
    assert alarming.all_inner_texts() == [
        AnyText("sentry.io"),  # refused connection: error
        AnyText("telemetry.example.net"),  # not on the allowlist: blocked
    ]
    (tmp_path / "ui.png").write_bytes(shot)
    if os.environ.get("AGENTLOG_UI_SCREENSHOT") == "1":
        (DOCS / "ui.png").write_bytes(shot)


class AnyText(str):
    """Equal to any text that contains it."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and str(self) in other

    __hash__ = str.__hash__


def agent_run(proxy: RunningProxy, fetch: Callable[..., None]) -> None:
    """What a coding agent's few minutes look like on the wire."""
    key = ["-H", "x-api-key: sk-ant-api03-Zx8eYtQ2mN4vB7cK1pL9sR3wD6fG0hJ5aU8iO2eT4yW"]
    anthropic = [
        *key,
        "-H",
        "anthropic-version: 2023-06-01",
        "-H",
        "content-type: application/json",
    ]

    def message(text: str) -> str:
        return json.dumps({
            "model": "claude-sonnet-4-5",
            "max_tokens": 8192,
            "system": [{"type": "text", "text": "You are a coding agent working in /repo."}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
            "tools": [{"name": "bash", "input_schema": {"type": "object"}}],
            "stream": False,
        })  # fmt: skip

    calls: list[tuple[str, list[str]]] = [
        ("https://api.anthropic.com/v1/messages?beta=true",
         [*anthropic, "-d", message("Fix the failing parser test")]),
        ("https://registry.npmjs.org/typescript", []),
        ("https://registry.npmjs.org/typescript/-/typescript-5.6.3.tgz", []),
        ("https://api.anthropic.com/v1/messages?beta=true",
         [*anthropic, "-d", message("pytest output: 1 failed")]),
        ("https://pypi.org/simple/requests/", []),
        ("https://files.pythonhosted.org/packages/requests-2.32.3-py3-none-any.whl", []),
        ("https://telemetry.example.net/v1/events", ["-d", '{"event":"session_start"}']),
        ("https://github.com/psf/requests.git/info/refs?service=git-upload-pack", []),
        ("https://sentry.io/api/4508/envelope/", ["-d", "{}"]),
        ("https://pypi.org/pypi/reqeusts/json", []),
        ("https://api.anthropic.com/v1/messages?beta=true",
         [*anthropic, "-d", message("Tests pass now. Summarise the change.")]),
        ("https://api.anthropic.com/api/event_logging/batch", ["-d", '{"events":[]}']),
    ]  # fmt: skip
    for url, args in calls:
        fetch(url, *args, "-o", "/dev/null")
    proxy.wait_for(
        lambda es: sum(e["event"] in ("response", "error", "blocked") for e in es) == len(calls)
    )
