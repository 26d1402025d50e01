"""Property: a secret sent through the proxy never lands in the logs directory.

Secrets go in credential-named headers, query parameters and JSON keys at any
depth, and as known token shapes anywhere in headers, URLs and bodies. The
pcaps and keys.log hold raw traffic by design; every other file is searched.
"""

from __future__ import annotations

import json
import ssl
import string
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import UPSTREAM, proxy_args
from tests.harness import start_proxy

pytestmark = pytest.mark.timeout(300)
ALNUM = string.ascii_letters + string.digits
plain_secret = st.text(ALNUM, min_size=16, max_size=32).map(lambda s: "Zq9" + s)
token = st.one_of(
    st.text(ALNUM, min_size=24, max_size=40).map("sk-ant-api03-".__add__),
    st.text(ALNUM, min_size=36, max_size=36).map("ghp_".__add__),
    st.text(string.ascii_uppercase + string.digits, min_size=16, max_size=16).map("AKIA".__add__),
)
credential_name = st.sampled_from(
    [
        "X-Api-Key",
        "Authorization",
        "X-Auth-Token",
        "api_key",
        "access_token",
        "password",
        "client_secret",
        "refreshToken",
    ]
)
depth = st.integers(0, 6)


@st.composite
def requests(draw):
    secret, shaped, name = draw(plain_secret), draw(token), draw(credential_name)
    where = draw(
        st.sampled_from(["header", "query", "json", "token-header", "token-url", "token-body"])
    )
    headers, params, body = {"x-note": "hello"}, {}, {"model": "m", "max_tokens": 5}
    needle = secret
    if where == "header":
        headers[name] = secret
    elif where == "query":
        params[name] = secret
    elif where == "json":
        node: object = {name: secret}
        for _ in range(draw(depth)):
            node = {"nested": node} if draw(st.booleans()) else [node, 1]
        body["payload"] = node
    else:
        needle = shaped
        if where == "token-header":
            headers["x-note"] = f"see {shaped} here"
        elif where == "token-url":
            params["q"] = shaped
        else:
            body["text"] = f"my key is {shaped}, keep it safe"
    return needle, headers, params, body


@pytest.fixture(scope="module")
def recording(tmp_path_factory, upstream, upstream_ca):
    logs = tmp_path_factory.mktemp("redaction") / "logs"
    proxy = start_proxy(logs, *proxy_args(upstream, upstream_ca[1]))
    tls = ssl.create_default_context(cafile=str(proxy.ca))
    with httpx.Client(proxy=proxy.url, verify=tls, timeout=20) as client:
        yield proxy, client
    proxy.stop()


def searched_files(logs: Path) -> list[Path]:
    return [
        p for p in logs.rglob("*") if p.is_file() and p.suffix != ".pcap" and p.name != "keys.log"
    ]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(requests())
def test_secrets_never_reach_the_logs(recording, case):
    proxy, client = recording
    needle, headers, params, body = case
    # /echo reflects everything it received: the secret comes back in the response too.
    reply = client.post(f"https://{UPSTREAM}/echo", headers=headers, params=params, json=body)
    assert reply.status_code == 200
    assert needle in reply.text or needle in json.dumps(reply.json())  # it did travel
    ids = {e["id"] for e in proxy.events("request")}
    proxy.wait_for(lambda es: {e["id"] for e in es if e["event"] == "response"} >= ids)
    for path in searched_files(proxy.logs):
        assert needle.encode() not in path.read_bytes(), f"secret found in {path}"
