"""Redaction, as pure functions: secrets in, no secrets out."""

import json
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from agentlog.redact import REDACTED, Redactor, is_secret_name
from tests.samples import ANTHROPIC_REQUEST, ANTHROPIC_RESPONSE, ANTHROPIC_SSE, CODE

R = Redactor()
SECRET_CHARS = string.ascii_letters + string.digits
secrets = st.text(SECRET_CHARS, min_size=12, max_size=40).map(lambda s: "S3cr" + s)
credential_names = st.sampled_from(
    [
        "Authorization",
        "X-Api-Key",
        "api_key",
        "apiKey",
        "access_token",
        "refreshToken",
        "client_secret",
        "password",
        "X-Auth-Token",
        "private_key",
        "aws_secret_access_key",
        "Cookie",
        "session_id",
        "credentials",
    ]
)
token_shapes = st.one_of(
    st.text(SECRET_CHARS + "-_", min_size=20, max_size=60).map(lambda s: "sk-ant-api03-" + s),
    st.text(string.ascii_letters + string.digits, min_size=36, max_size=36).map("ghp_".__add__),
    st.text(string.ascii_uppercase + string.digits, min_size=16, max_size=16).map("AKIA".__add__),
    st.text(SECRET_CHARS, min_size=40, max_size=80).map(
        lambda s: f"-----BEGIN RSA PRIVATE KEY-----\n{s}\n-----END RSA PRIVATE KEY-----"
    ),
)
filler = st.text(string.ascii_letters + " .,:/", max_size=30)


def test_names_that_are_credentials():
    for name in ["authorization", "X-Api-Key", "apiKey", "github_token", "PASSWORD", "set-cookie"]:
        assert is_secret_name(name), name
    for name in ["max_tokens", "input_tokens", "content-type", "model", "author", "tokenizer"]:
        assert not is_secret_name(name), name


@given(credential_names, secrets)
def test_credential_header_is_masked(name, secret):
    headers, found = R.headers([(name, secret), ("accept", "*/*")])
    assert secret not in json.dumps(headers)
    assert headers[name.lower()] == REDACTED
    assert headers["accept"] == "*/*"
    assert secret in found


@given(credential_names, secrets, filler)
def test_credential_query_parameter_is_masked(name, secret, other):
    path, _ = R.path(f"/v1/x?q={other.replace(' ', '+')}&{name}={secret}")
    assert secret not in path
    assert path.startswith("/v1/x?q=")


json_leaf = st.one_of(st.integers(), st.booleans(), filler)


@st.composite
def nested_with_secret(draw):
    name, secret = draw(credential_names), draw(secrets)
    node: object = {name: secret, "model": draw(filler)}
    for _ in range(draw(st.integers(0, 5))):
        node = draw(st.sampled_from(["dict", "list"])) == "dict" and {"k": node, "n": 1} or [node]
    return node, secret


@given(nested_with_secret())
def test_credential_json_key_is_masked_at_any_depth(doc_and_secret):
    doc, secret = doc_and_secret
    out = R.body(json.dumps(doc).encode(), "application/json")
    assert secret.encode() not in out
    json.loads(out)  # still JSON


@given(token_shapes, filler, filler)
def test_token_shapes_are_masked_anywhere(token, before, after):
    text = f"{before}{token} {after}"
    assert token not in R.scrub(text)
    assert token.encode() not in R.body(text.encode(), "text/plain")
    headers, _ = R.headers([("x-note", text)])
    assert token not in headers["x-note"]
    path, _ = R.path("/p/" + text.replace(" ", "%20").replace("\n", "%0A"))
    assert token.split("\n")[0] not in path


@given(secrets)
def test_header_secret_scrubbed_from_body(secret):
    _, found = R.headers([("Authorization", f"Bearer {secret}")])
    body = R.body(f'echo: "Bearer {secret}" and {secret}'.encode(), "text/plain", found)
    assert secret.encode() not in body


@given(secrets)
def test_json_pairs_in_non_json_text(secret):
    sse = f'data: {{"type":"x","api_key":"{secret}"}}\n\ndata: {{"cut":"'.encode()
    assert secret.encode() not in R.body(sse, "text/event-stream")


@settings(max_examples=50)
@given(st.binary(max_size=200), token_shapes)
def test_binary_bodies_survive_around_redaction(noise, token):
    out = R.body(noise + b" " + token.encode() + b" " + noise, "application/octet-stream")
    assert token.encode() not in out
    assert out.startswith(noise) or b"[REDACTED]" in out


def test_fingerprint_is_stable_and_keyed():
    a = Redactor(b"k1" * 16)
    b = Redactor(b"k2" * 16)
    assert a.mask("secret-value") == a.mask("secret-value") != a.mask("other-value")
    assert a.mask("secret-value") != b.mask("secret-value")
    assert "secret-value" not in a.mask("secret-value")
    assert a.mask("x").startswith("[REDACTED:")


@given(st.text(alphabet=st.characters(codec=None), max_size=30))
def test_json_with_any_text_redacts_to_bytes(text):
    body = json.dumps({"text": text, "api_key": "S3crS3crS3crS3cr"}).encode()
    out = R.body(body, "application/json")
    assert b"S3crS3crS3crS3cr" not in out


# -- issue 7, item 4: the body cap cuts a secret -------------------------------

CUT_SECRET = "Zq9mK2pL8xW4vN6tR1sY3u"


def test_unterminated_json_value_under_a_credential_name_is_masked_from_its_start():
    for body in (
        b'{"model": "m", "api_key": "' + CUT_SECRET[:14].encode(),
        b'data: {"type": "x", "password": "' + CUT_SECRET[:12].encode(),
        b'{"auth": {"token": ' + b"1234567890123",
    ):
        out = R.body(body, "application/json")
        assert CUT_SECRET[:12].encode() not in out and b"1234567890" not in out, out
        assert out.endswith(b"[REDACTED]"), out


def test_token_shapes_cut_short_are_masked():
    for cut in ("AIza" + "SyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUv"[:34], "ghp_" + "A1b2C3d4E5f6G7h8I9j"):
        out = R.body(f"my keys: {cut}".encode(), "text/plain")
        assert out == b"my keys: [REDACTED]", out


def test_known_secret_cut_short_is_masked():
    known = {CUT_SECRET}
    out = R.body(f"echo: {CUT_SECRET[:13]}".encode(), "text/plain", known)
    assert out == b"echo: [REDACTED]"


MULTIPART = (
    "--XyZ\r\n"
    'Content-Disposition: form-data; name="api_key"\r\n\r\n'
    f"{CUT_SECRET}\r\n"
    "--XyZ\r\n"
    'Content-Disposition: form-data; name="config"; filename=".env"\r\n'
    "Content-Type: text/plain\r\n\r\n"
    "PORT=8080\nSTRIPE_KEY=sk_live_4eC39HqLyjWDarjtT1zdp7dc\n"
    "\r\n--XyZ\r\n"
    'Content-Disposition: form-data; name="note"\r\n\r\n'
    "keep this note\r\n"
    "--XyZ--\r\n"
)


def test_multipart_parts_are_redacted_by_field_name_and_by_content():
    out = R.body(MULTIPART.encode(), "multipart/form-data; boundary=XyZ").decode()
    assert CUT_SECRET not in out and "sk_live_" not in out
    assert 'name="api_key"\r\n\r\n[REDACTED]\r\n--XyZ' in out
    assert "PORT=8080\nSTRIPE_KEY=[REDACTED]\n" in out
    assert "keep this note" in out and out.endswith("--XyZ--\r\n")


def test_multipart_cut_inside_a_credential_part_and_without_a_content_type():
    cut = MULTIPART[: MULTIPART.index(CUT_SECRET) + 12]
    assert CUT_SECRET[:12].encode() not in R.body(cut.encode(), "multipart/form-data; boundary=XyZ")
    assert CUT_SECRET.encode() not in R.body(MULTIPART.encode(), "")  # sniffed


# -- issue 7, item 5: more gaps --------------------------------------------------


def test_response_header_secrets_are_scrubbed_from_the_response_body():
    from agentlog import records

    known: set[str] = set()
    records.response_event(
        id="i",
        session="s",
        ts=0,
        status=200,
        reason="OK",
        http_version="HTTP/1.1",
        headers=[
            ("Set-Cookie", f"sid={CUT_SECRET}; Path=/api/v1; Domain=example.com; HttpOnly"),
            ("X-Auth-Token", "Zq9AuthTokenValue77"),
        ],
        response_bytes=0,
        response_body_truncated=False,
        ttfb_ms=None,
        duration_ms=1,
        upstream=(None, None),
        redactor=R,
        known=known,
    )
    page = f"<p>session {CUT_SECRET}, token Zq9AuthTokenValue77, see /api/v1 on example.com</p>"
    out = R.body(page.encode(), "text/html", known).decode()
    assert out == "<p>session [REDACTED], token [REDACTED], see /api/v1 on example.com</p>"


def test_urls_inside_headers_lose_their_credentials():
    headers, found = R.headers(
        [
            ("Referer", "https://app.test/home?access_token=Zq9ref1234567&tab=2"),
            ("Location", "https://app.test/cb?code=Zq9code12345&state=ok#id_token=Zq9idtok12345"),
            ("Link", "<https://u:Zq9pass1234@git.test/r>; rel=alternate"),
        ]
    )
    assert headers["referer"] == "https://app.test/home?access_token=[REDACTED]&tab=2"
    assert headers["location"] == "https://app.test/cb?code=[REDACTED]&state=ok#id_token=[REDACTED]"
    assert headers["link"] == "<https://u:[REDACTED]@git.test/r>; rel=alternate"
    assert {"Zq9ref1234567", "Zq9code12345", "Zq9pass1234"} <= found


def test_query_key_sig_code_and_semicolon_parameters():
    path, found = R.path(
        "/maps/api?key=AIzaNotQuiteAKey&q=paris;jsessionid=Zq9js123456"
        "&sv=2024&sig=Zq9sig%2B12345%3D&code=Zq9code123"
    )
    assert path == (
        "/maps/api?key=[REDACTED]&q=paris;jsessionid=[REDACTED]"
        "&sv=2024&sig=[REDACTED]&code=[REDACTED]"
    )
    assert "Zq9sig+12345=" in found  # decoded, to scrub it where it is not encoded


def test_percent_encoded_token_in_any_parameter():
    token = "glc_" + "Ab12+Cd34/Ef56=" * 3
    path, _ = R.path("/v1/search?q=" + __import__("urllib.parse").parse.quote_plus(token))
    assert path == "/v1/search?q=[REDACTED]"


def test_credential_header_names():
    names = ["Ocp-Apim-Subscription-Key", "x-functions-key", "X-Goog-Api-Key", "api-key"]
    names += ["Private-Token", "X-Vault-Token", "X-Amz-Security-Token", "X-Hub-Signature-256"]
    headers, _ = R.headers([(n, "Zq9value12345") for n in names] + [("Idempotency-Key", "k-1")])
    assert all(headers[n.lower()] == REDACTED for n in names), headers
    assert headers["idempotency-key"] == "k-1"


def test_escaped_json_inside_sse_and_ndjson():
    inner = json.dumps({"api_key": "Zq9escaped12345", "n": 1})
    sse = f"event: delta\ndata: {json.dumps({'delta': inner})}\n\n"
    twice = json.dumps({"outer": json.dumps({"tool": inner})})
    ndjson = f'{{"i": 1}}\n{twice}\n'
    for body, ctype in ((sse, "text/event-stream"), (ndjson, "application/x-ndjson")):
        out = R.body(body.encode(), ctype)
        assert out.replace(b"[REDACTED]", b"Zq9escaped12345") == body.encode(), out


def test_non_string_values_under_secret_names_in_streamed_text():
    sse = 'data: {"token": 918273645546, "secret": {"k": "v1", "n": [1, 2]}, "ok": 7}\n\n'
    out = R.body(sse.encode(), "text/event-stream").decode()
    assert out == 'data: {"token": [REDACTED], "secret": [REDACTED], "ok": 7}\n\n'


def test_free_text_credentials():
    text = (
        "[default]\n"
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
        "# .env\n"
        "DATABASE_PASSWORD=correct-horse-battery\n"
        'export OPENAI_API_KEY="Zq9openai12345"\n'
        "machine api.test login bob password Zq9netrc12345\n"
        "settings:\n"
        "  token: Zq9yamltoken123\n"
        "  timeout: 30\n"
    )
    out = R.body(text.encode(), "text/plain").decode()
    secrets = ["AKIAIOSFODNN7", "wJalrXUtnFEMI", "correct-horse", "Zq9openai", "Zq9netrc"]
    for secret in [*secrets, "Zq9yaml"]:
        assert secret not in out, out
    assert "  timeout: 30\n" in out and "# .env\n" in out


NEW_SHAPES = [
    "npm_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "hf_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZaBcDeFgH",
    "sk_live_" + "51H8xYzAbCdEfGhIjKlMnOpQr",
    "rk_live_" + "51H8xYzAbCdEfGhIjKlMnOpQr",
    "glpat-" + "xY9-AbCdEfGhIjKlMn01",
    "ya29." + "a0AfB_byC1d2E3f4G5h6I7j8K9l0M1n2O3p4Q5r6S7t8U9v0W1x2Y3z4",
    "xapp-1-A0123456789-1234567890123-" + "0123456789abcdef" * 4,
    "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "dop_v1_" + "0123456789abcdef" * 4,
    "sk-proj-" + "Ab1" * 24 + "T3BlbkFJ" + "Cd2" * 24,
]


def test_catalogue_token_shapes():
    for token in NEW_SHAPES:
        assert R.scrub(f"use {token} here") == "use [REDACTED] here", token
        assert R.body(json.dumps({"note": token}).encode()) == b'{"note": "[REDACTED]"}'


# -- what must not be touched ---------------------------------------------------------


def test_ordinary_anthropic_traffic_is_stored_byte_for_byte():
    for body, ctype in (
        (json.dumps(ANTHROPIC_REQUEST), "application/json"),
        (json.dumps(ANTHROPIC_REQUEST, separators=(",", ":")), "application/json"),
        (json.dumps(ANTHROPIC_RESPONSE), "application/json"),
        (ANTHROPIC_SSE, "text/event-stream"),
        (CODE, "text/x-python"),
        ("Plain prose: the token budget is 4096; max_tokens=4096, input_tokens: 12.", "text/plain"),
    ):
        assert R.body(body.encode(), ctype).decode() == body
    headers = [
        ("anthropic-beta", "claude-code-20250219,oauth-2025-04-20"),
        ("user-agent", "claude-cli/1.0.83 (external, cli)"),
        ("content-type", "multipart/form-data; boundary=----x"),
        ("accept", "text/html;q=0.9,*/*;q=0.8"),
        ("anthropic-ratelimit-tokens-remaining", "400000"),
    ]
    assert R.headers(headers)[0] == dict(headers)
    assert R.path("/v1/messages?beta=true&limit=20")[0] == "/v1/messages?beta=true&limit=20"


def test_an_oauth_code_exchange_keeps_its_code_and_verifier_out():
    """Claude Code's login: POST platform.claude.com/v1/oauth/token, in JSON."""
    exchange = {
        "grant_type": "authorization_code",
        "code": "Zq9code-one-time-12345",
        "code_verifier": "Zq9verifier-pkce-abcdefghijklmnop",
        "client_id": "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
        "redirect_uri": "https://platform.claude.com/oauth/code/callback",
        "state": "Zq9state",
    }
    known: set[str] = set()
    clean = json.loads(R.body(json.dumps(exchange).encode(), "application/json", known))
    assert clean["code"] == clean["code_verifier"] == REDACTED
    assert {k: v for k, v in clean.items() if k not in ("code", "code_verifier")} == {
        k: v for k, v in exchange.items() if k not in ("code", "code_verifier")
    }
    assert {"Zq9code-one-time-12345", "Zq9verifier-pkce-abcdefghijklmnop"} <= known
    # "code" elsewhere is what it says: source code, an error code.
    other = {"code": "print('hello')", "error": {"code": 429}}
    assert json.loads(R.body(json.dumps(other).encode(), "application/json")) == other


def test_names_that_describe_a_secret_are_not_secrets():
    for name in ["token_count", "auth_type", "token_url", "secret_name", "expires_in", "token_ids"]:
        assert not is_secret_name(name), name
    for name in ["refresh_token", "session_id", "subscription_key", "AccountKey", "dbPassword"]:
        assert is_secret_name(name), name


def test_hostile_bodies_are_redacted_in_bounded_time():
    import time

    for body in (b"sk-" * 300_000, b"eyJ" * 300_000, b'{"token":{' * 100_000, b"a=" * 400_000):
        start = time.monotonic()
        R.body(body, "text/plain")
        assert time.monotonic() - start < 5, body[:12]


def test_secrets_inside_a_masked_object_are_learnt_not_its_other_fields():
    known: set[str] = set()
    doc = {"auth": {"type": "oauth2-bearer", "password": "Zq9inner12345", "list": ["Zq9x"]}}
    R.body(json.dumps(doc).encode(), "application/json", known)
    assert "Zq9inner12345" in known and "oauth2-bearer" not in known


def test_free_text_values_that_are_prose_or_code_are_kept():
    kept = [
        "Password: must be at least 12 characters long.",
        "The token: see the docs for how to make one.",
        "password: string; token: AccessToken;",
        "api_key = settings.API_KEY\nsecret = None\n",
        "export GITHUB_TOKEN=$(gh auth token)\n",
    ]
    for text in kept:
        assert R.body(text.encode(), "text/plain").decode() == text
    masked = "db:\n  password: hunter\n"  # a password alone on its line: a config file
    assert R.body(masked.encode(), "text/plain") == b"db:\n  password: [REDACTED]\n"


def test_urls_nested_in_parameters_and_a_header_that_is_one_parameter():
    from urllib.parse import quote

    nested = "https://app.test/cb?code=Zq9nested12345&state=1"
    path, found = R.path(f"/login?next={nested}&redirect={quote(nested, safe='')}")
    assert "Zq9nested" not in path and "Zq9nested12345" in found
    assert path.startswith("/login?next=https://app.test/cb?code=[REDACTED]&state=1&redirect=")
    headers, _ = R.headers([("X-Debug", "password=Zq9debug123456"), ("Keep-Alive", "timeout=5")])
    assert headers == {"x-debug": "password=[REDACTED]", "keep-alive": "timeout=5"}


@settings(max_examples=300)
@given(
    st.text(max_size=80),
    st.text(max_size=80),
    st.binary(max_size=300),
    st.sampled_from(["", "application/json", "multipart/form-data; boundary=b", "text/plain"]),
)
def test_any_input_is_redacted_without_error(name, value, data, ctype):
    """Hostile traffic never crashes the redactor (it runs on the proxy's event loop)."""
    R.headers([(name, value), ("referer", value), ("x", f"a={value}")], {value})
    R.path("/" + value + "?" + name + "=" + value, {value})
    R.scrub(value, {name})
    for body in (data, b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\n" + data):
        assert isinstance(R.body(body, ctype, {value}), bytes)
