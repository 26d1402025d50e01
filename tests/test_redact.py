"""Redaction, as pure functions: secrets in, no secrets out."""

import json
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from agentlog.redact import REDACTED, Redactor, is_secret_name

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
