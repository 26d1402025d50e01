"""Attacks on redaction through the real proxy: a secret goes out (or comes
back) the way an agent or a server would send it, with real curl (and httpx),
then every file under the logs directory but the pcaps and keys.log is
searched for it, or for 12 consecutive characters of it.
"""

from __future__ import annotations

import base64
import json
import random
import ssl
import string
import subprocess
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentlog.redaction.shapes import SHAPES
from tests.conftest import UPSTREAM, proxy_args
from tests.harness import RunningProxy, start_proxy
from tests.samples import ANTHROPIC_REQUEST, ANTHROPIC_SSE
from tests.secret_samples import Secret, assert_not_stored, sample

pytestmark = pytest.mark.timeout(300)
CAP = 700  # the capped proxy's --body-cap


def _proxy(tmp_path_factory, upstream, upstream_ca, name: str, *extra: str):
    logs = tmp_path_factory.mktemp(name) / "logs"
    proxy = start_proxy(logs, *proxy_args(upstream, upstream_ca[1]), *extra)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def recording(tmp_path_factory, upstream, upstream_ca):
    yield from _proxy(tmp_path_factory, upstream, upstream_ca, "redaction")


@pytest.fixture(scope="module")
def capped(tmp_path_factory, upstream, upstream_ca):
    yield from _proxy(tmp_path_factory, upstream, upstream_ca, "capped", "--body-cap", str(CAP))


def send(proxy: RunningProxy, path: str, *args: str, reply: dict | None = None) -> bytes:
    """One request with curl; returns once its response event is written."""
    done = len(proxy.events("response"))
    if reply is not None:
        args = (*args, "-H", "x-reply: " + base64.b64encode(json.dumps(reply).encode()).decode())
    cmd = ["curl", "-sS", "--max-time", "20", "-x", proxy.url, "--cacert", str(proxy.ca)]
    got = subprocess.run(
        [*cmd, *args, f"https://{UPSTREAM}{path}"], capture_output=True, timeout=30, check=False
    )
    assert got.returncode == 0, got.stderr
    proxy.wait_for(lambda es: sum(e["event"] == "response" for e in es) > done)
    return got.stdout


def body_file(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / f"body{random.random()}"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return f"@{path}"


def stored_bodies(proxy: RunningProxy, path_prefix: str) -> tuple[bytes | None, bytes | None]:
    events = proxy.exchange(path_prefix)
    merged = {k: v for e in events for k, v in e.items() if v is not None}
    return tuple(
        (proxy.logs / merged[k]).read_bytes() if k in merged else None
        for k in ("request_body", "response_body")
    )


GENERIC = Secret("Zq9mK2pL8xW4vN6tR1sY3uQ7")
rng = random.Random(7)


def token(name: str) -> Secret:
    return sample(next(s for s in SHAPES if s.name == name), rng)


# -- item 4: the body cap cuts a secret ---------------------------------------


@pytest.mark.parametrize(
    ("kind", "secret", "keep"),
    [
        ("json", GENERIC, 14),
        ("text", Secret("AIza" + "SyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW", 4), 4 + 34),
        ("text", Secret("ghp_" + "A1b2C3d4E5f6G7h8I9j0k1L2m3N4o5P6q7R8", 4), 4 + 19),
        ("multipart", GENERIC, 12),
    ],
)
def test_a_secret_cut_by_the_cap_is_masked_from_its_start(capped, tmp_path, kind, secret, keep):
    """The cap falls `keep` characters into the secret."""
    if kind == "json":
        template, ctype = '{"model": "m", "pad": "{pad}", "api_key": "', "application/json"
    elif kind == "text":
        template, ctype = "{pad} my key is ", "text/plain"
    else:
        template = '--XyZ\r\nContent-Disposition: form-data; name="pad"\r\n\r\n{pad}\r\n'
        template += '--XyZ\r\nContent-Disposition: form-data; name="client_secret"\r\n\r\n'
        ctype = "multipart/form-data; boundary=XyZ"
    head = template.replace("{pad}", "p" * (CAP - keep - len(template) + len("{pad}")))
    assert len(head) + keep == CAP
    body = head + secret.value + ('"}' if kind == "json" else "\r\n--XyZ--\r\n")
    send(
        capped,
        f"/echo?cut={kind}{keep}",
        "-H",
        f"Content-Type: {ctype}",
        "--data-binary",
        body_file(tmp_path, body),
    )
    request_body, _ = stored_bodies(capped, f"/echo?cut={kind}{keep}")
    assert request_body is not None and len(request_body) < CAP  # it was cut, then masked
    assert_not_stored(capped.logs, secret)


def test_multipart_parts_are_redacted_by_name_and_by_content(recording, tmp_path):
    env = tmp_path / ".env"
    stripe = token("stripe")
    env.write_text(f"PORT=8080\nDB_PASSWORD={GENERIC.value}\nSTRIPE={stripe.value}\n")
    api = Secret("Zq9apiKeyField2233445566")
    send(
        recording,
        "/echo?multipart=1",
        "-F",
        f"api_key={api.value}",
        "-F",
        f"config=@{env}",
        "-F",
        "note=keep me",
    )
    request_body, _ = stored_bodies(recording, "/echo?multipart=1")
    assert b"keep me" in request_body and b"PORT=8080" in request_body
    assert_not_stored(recording.logs, api, GENERIC, stripe)


# -- item 5: more gaps ----------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
def test_response_header_secrets_are_not_left_in_the_response_body(recording, chunked):
    cookie, auth, code = (Secret(f"Zq9{n}Value1234567890") for n in ("Cookie", "Auth", "Code"))
    reply = {
        "status": 302,
        "chunked": chunked,
        "headers": [
            ["Set-Cookie", f"sid={cookie.value}; Path=/app; Domain=upstream.test; HttpOnly"],
            ["X-Auth-Token", auth.value],
            ["Location", f"https://upstream.test/cb?code={code.value}&state=ok"],
            ["Content-Type", "text/html"],
        ],
        "body": f"<p>session {cookie.value}, token {auth.value}, code {code.value}; see /app</p>",
    }
    send(recording, f"/reply?setcookie={chunked}", reply=reply)
    _, response_body = stored_bodies(recording, f"/reply?setcookie={chunked}")
    assert (
        response_body == b"<p>session [REDACTED], token [REDACTED], code [REDACTED]; see /app</p>"
    )
    assert_not_stored(recording.logs, cookie, auth, code)


def test_urls_in_headers_query_parameters_and_header_names(recording):
    s = [
        Secret(f"Zq9{n}Secret12345678") for n in ("Ref", "Key", "Sig", "Code", "Js", "Apim", "Func")
    ]
    path = f"/echo?q=1&key={s[1].value}&sig={s[2].value}&code={s[3].value};jsessionid={s[4].value}"
    send(
        recording,
        path,
        "-e",
        f"https://app.test/home?access_token={s[0].value}&tab=2",
        "-H",
        f"Ocp-Apim-Subscription-Key: {s[5].value}",
        "-H",
        f"x-functions-key: {s[6].value}",
    )
    (request,) = [e for e in recording.events("request") if e["path"].startswith("/echo?q=1&key=")]
    assert request["headers"]["referer"] == "https://app.test/home?access_token=[REDACTED]&tab=2"
    assert_not_stored(recording.logs, *s)  # /echo sent each one back in its response body too


def test_escaped_json_and_non_string_values_in_sse_and_ndjson(recording):
    secrets = [Secret(f"Zq9{n}Streamed12345678") for n in ("Esc", "Nd", "Twice")]
    tool = json.dumps({"command": "deploy", "api_key": secrets[0].value})
    sse = f"event: delta\ndata: {json.dumps({'delta': {'partial_json': tool}})}\n\n"
    sse += 'data: {"token": 918273645546372, "secret": {"k": [1, 2]}}\n\n'
    ndjson = json.dumps({"password": secrets[1].value}) + "\n"
    ndjson += json.dumps({"out": json.dumps({"inner": json.dumps({"token": secrets[2].value})})})
    for ctype, body in (("text/event-stream", sse), ("application/x-ndjson", ndjson)):
        reply = {"chunked": True, "headers": [["Content-Type", ctype]], "body": body}
        send(recording, f"/reply?stream={ctype}", reply=reply)
    _, stored = stored_bodies(recording, "/reply?stream=text/event-stream")
    assert b'"command": \\"deploy\\"' in stored or b'\\"command\\": \\"deploy\\"' in stored
    assert b"918273645546372" not in stored and b"[1, 2]" not in stored
    assert_not_stored(recording.logs, *secrets)


def test_free_text_credentials_and_catalogue_shapes(recording, tmp_path):
    shapes = [
        token(n)
        for n in ("npm", "huggingface", "stripe", "gitlab", "google-oauth-access", "slack-app")
    ]
    aws, db, yaml_token = (
        Secret(v)
        for v in (
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "Zq9dbPassword123",
            "Zq9yamlToken4567",
        )
    )
    text = (
        f"[default]\naws_secret_access_key = {aws.value}\n"
        f"# .env\nDATABASE_PASSWORD={db.value}\nLOG_LEVEL=debug\n"
        f"settings:\n  token: {yaml_token.value}\n  timeout: 30\n"
        + "".join(f"key {i}: {s.value}\n" for i, s in enumerate(shapes))
    )
    send(
        recording,
        "/echo?freetext=1",
        "-H",
        "Content-Type: text/plain",
        "--data-binary",
        body_file(tmp_path, text),
    )
    request_body, _ = stored_bodies(recording, "/echo?freetext=1")
    assert b"LOG_LEVEL=debug\n" in request_body and b"timeout: 30" in request_body
    assert_not_stored(recording.logs, aws, db, yaml_token, *shapes)


def test_an_ordinary_anthropic_exchange_is_stored_unchanged(recording, tmp_path):
    request = json.dumps(ANTHROPIC_REQUEST).encode()
    reply = {
        "chunked": True,
        "headers": [["Content-Type", "text/event-stream"]],
        "body": ANTHROPIC_SSE,
    }
    send(
        recording,
        "/reply?anthropic=1",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        body_file(tmp_path, request),
        reply=reply,
    )
    request_body, response_body = stored_bodies(recording, "/reply?anthropic=1")
    assert request_body == request
    assert response_body == ANTHROPIC_SSE.encode()


# -- a battery of realistic secrets, each placed where agents put them ---------------

battery_rng = random.Random(2026)
BATTERY = [sample(shape, battery_rng) for shape in SHAPES]
BATTERY += [
    Secret(
        "Zq9" + "".join(battery_rng.choice(string.ascii_letters + string.digits) for _ in range(24))
    )
    for _ in range(8)
]
PLACES = ["header", "query", "json", "form", "multipart", "text", "sse-reply", "cookie-reply"]


@pytest.mark.parametrize(
    "i", range(len(BATTERY)), ids=lambda i: f"{BATTERY[i].shape}-{PLACES[i % len(PLACES)]}"
)
def test_battery_of_realistic_secrets(recording, tmp_path, i):
    secret, place = BATTERY[i], PLACES[i % len(PLACES)]
    s, path, args, reply = secret.value, f"/echo?battery={i}", [], None
    if place == "header":
        args = ["-H", f"X-Api-Key: {s}", "-H", f"X-Note: see {s} here"]
    elif place == "query":
        path += f"&access_token={quote(s, safe='')}&q={quote_plus('see ' + s)}"
    elif place == "json":
        args = [
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body_file(
                tmp_path,
                json.dumps({"messages": [{"content": f"key: {s}"}], "auth": {"api_key": s}}),
            ),
        ]
    elif place == "form":
        args = [
            "--data-binary",
            body_file(
                tmp_path, f"note=hi&client_secret={quote_plus(s)}&text={quote_plus('see ' + s)}"
            ),
        ]
    elif place == "multipart":
        args = ["-F", f"password={s}", "-F", f"notes=my token is {s}"]
    elif place == "text":
        args = [
            "-H",
            "Content-Type: text/plain",
            "--data-binary",
            body_file(tmp_path, f"export SERVICE_TOKEN={s}\nsee {s}\n"),
        ]
    elif place == "sse-reply":
        path = f"/reply?battery={i}"
        escaped = json.dumps({"delta": json.dumps({"api_key": s})})
        sse = f"data: {escaped}\n\ndata: {json.dumps({'text': 'token ' + s})}\n\n"
        reply = {"chunked": True, "headers": [["Content-Type", "text/event-stream"]], "body": sse}
    else:
        path = f"/reply?battery={i}"
        reply = {
            "headers": [["Set-Cookie", f"session={s}; Path=/; Secure"], ["X-Auth-Token", s]],
            "body": f"welcome {s}",
        }
    send(recording, path, *args, reply=reply)
    assert_not_stored(recording.logs, secret)


# -- httpx, any credential name, any depth ------------------------------------------

ALNUM = string.ascii_letters + string.digits
plain_secret = st.text(ALNUM, min_size=16, max_size=32).map(lambda s: "Zq9" + s)
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


@pytest.fixture(scope="module")
def httpx_client(recording):
    tls = ssl.create_default_context(cafile=str(recording.ca))
    with httpx.Client(proxy=recording.url, verify=tls, timeout=20) as client:
        yield client


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    plain_secret, credential_name, st.sampled_from(["header", "query", "json"]), st.integers(0, 6)
)
def test_named_secrets_never_reach_the_logs(recording, httpx_client, secret, name, where, depth):
    headers, params, body = {"x-note": "hello"}, {}, {"model": "m", "max_tokens": 5}
    if where == "header":
        headers[name] = secret
    elif where == "query":
        params[name] = secret
    else:
        node: object = {name: secret}
        for _ in range(depth):
            node = {"nested": node} if depth % 2 else [node, 1]
        body["payload"] = node
    done = len(recording.events("response"))
    reply = httpx_client.post(f"https://{UPSTREAM}/echo", headers=headers, params=params, json=body)
    assert reply.status_code == 200 and secret in reply.text  # it did travel, both ways
    recording.wait_for(lambda es: sum(e["event"] == "response" for e in es) > done)
    assert_not_stored(recording.logs, Secret(secret))
