"""Property: no stored output holds a secret, nor 12 consecutive characters of it.

For any realistic secret (a token of any format in the catalogue, or a
password of no known format under a credential name), placed in any header,
query, JSON, form, multipart, SSE, NDJSON or free-text body, cut by the cap at
any offset, in either direction. This drives the pure pipeline the proxy uses:
the records builders for headers and path, and `journal.bodies.store` for the
bodies, into a temporary logs directory whose every file is then searched.
"""

from __future__ import annotations

import gzip
import json
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus

try:
    from compression import zstd  # Python 3.14
except ImportError:
    from backports import zstd
import brotli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentlog import records
from agentlog.journal.bodies import Body, store
from agentlog.redact import Redactor
from tests.secret_samples import Secret, assert_not_stored, generic_secrets, tokens

R = Redactor()
# Content-Encodings a body may be sent with. The lead adds gzip, br and zstd
# here once bounded decoding of cut bodies lands (journal/bodies.py).
ENCODINGS: dict[str, Callable[[bytes], bytes]] = {
    "": lambda data: data,
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstd.compress,
}

HEADER_NAMES = [
    "Authorization",
    "Proxy-Authorization",
    "X-Api-Key",
    "X-Auth-Token",
    "Ocp-Apim-Subscription-Key",
    "x-functions-key",
    "X-Goog-Api-Key",
    "Api-Key",
    "Private-Token",
    "X-Vault-Token",
]
PARAMS = [
    "access_token",
    "api_key",
    "apiKey",
    "key",
    "sig",
    "code",
    "token",
    "client_secret",
    "password",
    "X-Amz-Signature",
    "refresh_token",
]
JSON_KEYS = [
    "api_key",
    "apiKey",
    "access_token",
    "refreshToken",
    "client_secret",
    "password",
    "private_key",
    "aws_secret_access_key",
    "credentials",
    "secret",
    "x-api-key",
    "subscription_key",
    "session_id",
]
FREE_TEXT = [
    "aws_secret_access_key = {s}",
    "export GITHUB_TOKEN={s}",
    'OPENAI_API_KEY="{s}"',
    "token: {s}",
    "  password: '{s}'",
    "--api-key={s}",
    "DB_PASSWORD={s}",
    "client_secret: {s}",
    "Authorization: Bearer {s}",
    "[default]\naws_access_key_id = AKIA1234\naws_secret_access_key={s}",
]
# Words shorter than the 12-character window, so filler never looks like a leak.
_WORDS = ["the", "model", "said", "hello", "tokens", "max_tokens", "key", "value", "42", "ok"]
filler = st.lists(st.sampled_from(_WORDS), max_size=8).flatmap(
    lambda ws: st.sampled_from([" ", ", ", ".\n", ": "]).map(lambda sep: sep.join(ws))
)


@dataclass
class Exchange:
    path: str = "/v1/messages"
    request_headers: list[tuple[str, str]] = field(default_factory=list)
    request_body: bytes = b""
    request_type: str = ""
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_body: bytes = b""
    response_type: str = ""


# -- where a secret goes -----------------------------------------------------


@st.composite
def in_header(draw, s: Secret, named: bool) -> list[tuple[str, str]]:
    if not named:
        return [("X-Note", f"{draw(filler)} {s.value} {draw(filler)}".replace("\n", " "))]
    kind = draw(st.sampled_from(["named", "cookie", "url"]))
    if kind == "named":
        name = draw(st.sampled_from(HEADER_NAMES))
        value = f"Bearer {s.value}" if name.endswith("uthorization") else s.value
        return [(name, value)]
    if kind == "cookie":
        return [("Cookie", f"theme=dark; sid={s.value}"), ("Set-Cookie", f"sid={s.value}; Path=/")]
    name = draw(st.sampled_from(["Referer", "Location", "Link", "Content-Location"]))
    param = draw(st.sampled_from(PARAMS))
    sep = draw(st.sampled_from("?#;"))
    return [(name, f"https://h.test/cb{sep}{param}={quote(s.value, safe='')}&state=1")]


@st.composite
def in_path(draw, s: Secret, named: bool) -> str:
    if not named:
        return f"/v1/search?q={quote_plus(draw(filler) + ' ' + s.value)}&n=1"
    param = draw(st.sampled_from(PARAMS + ["jsessionid"]))
    sep = draw(st.sampled_from(["?a=1&", "?", ";", "?a=1;"]))
    return f"/v1/x{sep}{param}={quote(s.value, safe='')}&b=2"


@st.composite
def in_body(draw, s: Secret, named: bool) -> tuple[str, str]:
    """(text, content type)."""
    pad, tail = draw(filler), draw(filler)
    kinds = ["json", "escaped-json", "form", "multipart", "sse", "ndjson", "free-text"]
    kind = draw(st.sampled_from(kinds if named else ["json", "sse", "text", "multipart"]))
    key = draw(st.sampled_from(JSON_KEYS))
    if not named:
        text = f"{pad} {s.value} {tail}"
        if kind == "json":
            doc = {"model": "m", "messages": [{"role": "user", "content": text}]}
            return json.dumps(doc), "application/json"
        if kind == "sse":
            return f"data: {json.dumps({'delta': {'text': text}})}\n\n", "text/event-stream"
        if kind == "multipart":
            return _multipart([("note", text, "")]), "multipart/form-data; boundary=b0undary"
        return text, "text/plain"
    node: object = {key: s.value}
    for _ in range(draw(st.integers(0, 3))):
        node = {"nested": node} if draw(st.booleans()) else [node, 1]
    if kind == "json":
        return json.dumps(
            {"model": "m", "pad": pad, "payload": node, "tail": tail}
        ), "application/json"
    if kind == "escaped-json":
        return json.dumps({"pad": pad, "tool_input": json.dumps(node)}), "application/json"
    if kind == "form":
        body = f"note={quote_plus(pad)}&{draw(st.sampled_from(PARAMS))}={quote_plus(s.value)}&x=1"
        return body, "application/x-www-form-urlencoded"
    if kind == "multipart":
        if draw(st.booleans()):
            parts = [("note", pad, ""), (key, s.value, ""), ("tail", tail, "")]
        else:
            env = f"{pad}\n{draw(st.sampled_from(FREE_TEXT)).format(s=s.value)}\n"
            parts = [("note", pad, ""), ("file", env, "text/plain")]
        return _multipart(parts), "multipart/form-data; boundary=b0undary"
    if kind == "sse":
        delta = json.dumps(node) if draw(st.booleans()) else node
        event = json.dumps({"type": "delta", "delta": delta})
        return f"data: {json.dumps({'text': pad})}\n\ndata: {event}\n\n", "text/event-stream"
    if kind == "ndjson":
        lines = [json.dumps({"i": 0, "note": pad}), json.dumps(node), json.dumps({"i": 2})]
        return "\n".join(lines) + "\n", "application/x-ndjson"
    template = draw(st.sampled_from(FREE_TEXT))
    return f"{pad}\n{template.format(s=s.value)}\n{tail}", "text/plain"


def _multipart(parts: list[tuple[str, str, str]]) -> str:
    out = []
    for name, content, ctype in parts:
        head = f'Content-Disposition: form-data; name="{name}"'
        if ctype:
            head += f'; filename="{name}.env"\r\nContent-Type: {ctype}'
        out.append(f"--b0undary\r\n{head}\r\n\r\n{content}\r\n")
    return "".join(out) + "--b0undary--\r\n"


@st.composite
def cases(draw) -> tuple[Secret, Exchange, int, str]:
    """A secret, an exchange holding it, the body cap, the bodies' encoding."""
    named = draw(st.booleans())
    secret = draw(st.one_of(tokens(), generic_secrets()) if named else tokens())
    direction = draw(st.sampled_from(["request", "response"]))
    where = draw(st.sampled_from(["header", "path", "body", "body", "echo"]))
    ex = Exchange()
    if where == "header":
        headers = draw(in_header(secret, named))
        if direction == "request":
            ex.request_headers = headers
        else:
            ex.response_headers = headers
    elif where == "path":
        ex.path = draw(in_path(secret, named))
    elif where == "body":
        text, ctype = draw(in_body(secret, named))
        if direction == "request":
            ex.request_body, ex.request_type = text.encode(), ctype
        else:
            ex.response_body, ex.response_type = text.encode(), ctype
    else:  # a secret from headers comes back in the response body
        headers = draw(in_header(secret, named=True))
        if direction == "request":
            ex.request_headers = headers
        else:
            ex.response_headers = headers
        if draw(st.booleans()):  # as /echo does: the headers, names and all
            echo, ctype = json.dumps({"headers": dict(headers)}), "application/json"
        else:  # the value alone, in a page
            echo, ctype = f"<p>{draw(filler)} {secret.value} {draw(filler)}</p>", "text/html"
        ex.response_body, ex.response_type = echo.encode(), ctype
    longest = max(len(ex.request_body), len(ex.response_body))
    cap = draw(st.integers(0, longest + 1))
    encoding = draw(st.sampled_from(sorted(ENCODINGS)))
    return secret, ex, cap, encoding


# -- the pipeline ---------------------------------------------------------------


def store_exchange(root: Path, ex: Exchange, cap: int, encoding: str) -> None:
    """What the Recorder and the JournalWriter do with one exchange."""
    request, secrets = records.request_event(
        id="01TEST",
        session="01SESSION",
        ts=0.0,
        method="POST",
        scheme="https",
        domain="api.test",
        port=443,
        path=ex.path,
        http_version="HTTP/1.1",
        headers=ex.request_headers,
        client="127.0.0.1:1",
        agent_dst=None,
        mode="regular",
        decision="allowed",
        request_bytes=len(ex.request_body),
        request_body_truncated=len(ex.request_body) > cap,
        pcap_file=None,
        redactor=R,
    )
    body_secrets = set(secrets)
    stored: set[str] = set()
    encode = ENCODINGS[encoding]
    if ex.request_body:
        wire = encode(ex.request_body)
        body = Body(wire[:cap], ex.request_type, encoding, body_secrets)
        request["request_body"] = store(
            root, body, R, stored, limit=cap, complete=len(wire) <= cap
        ).ref
    response = records.response_event(
        id="01TEST",
        session="01SESSION",
        ts=0.0,
        status=200,
        reason="OK",
        http_version="HTTP/1.1",
        headers=ex.response_headers,
        response_bytes=len(ex.response_body),
        response_body_truncated=len(ex.response_body) > cap,
        ttfb_ms=None,
        duration_ms=1.0,
        upstream=(None, None),
        redactor=R,
        known=secrets,
    )
    body_secrets.update(secrets)
    if ex.response_body:
        wire = encode(ex.response_body)
        body = Body(wire[:cap], ex.response_type, encoding, body_secrets)
        response["response_body"] = store(
            root, body, R, stored, limit=cap, complete=len(wire) <= cap
        ).ref
    lines = (json.dumps(e, ensure_ascii=False) + "\n" for e in (request, response))
    (root / "requests.jsonl").write_text("".join(lines))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_no_stored_output_holds_a_secret(case):
    secret, exchange, cap, encoding = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "bodies").mkdir()
        store_exchange(root, exchange, cap, encoding)
        assert_not_stored(root, secret)


def test_the_check_can_fail(tmp_path):
    """A leak is found: the whole secret, a 12-character piece, or its %-encoding."""
    secret = Secret("ghp_" + "aB3" * 12, public=4)
    for leak in (secret.value, secret.value[10:22], quote(secret.value, safe="")):
        (tmp_path / "f").write_text(f"x {leak} y")
        assert secret.leaked_in((tmp_path / "f").read_bytes()) is not None
    (tmp_path / "f").write_text("ghp_aB3aB3a [REDACTED]")  # 11 characters: no leak
    assert secret.leaked_in((tmp_path / "f").read_bytes()) is None
