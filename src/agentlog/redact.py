"""Redaction: keep secrets out of everything agentlog writes (pure functions).

Three nets, applied in this order:
1. by name: headers, query parameters, form fields and JSON keys whose name
   looks like a credential have their whole value replaced;
2. by shape: known token formats (sk-ant-..., ghp_..., AKIA..., private key
   blocks, JWTs) are replaced wherever they appear;
3. by value: every value caught by 1. is also scrubbed from the rest of the
   same exchange (a bearer token echoed in a body, a cookie copied to a URL).
"""

import functools
import hashlib
import hmac
import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, unquote_plus

REDACTED = "[REDACTED]"

# Headers that are credentials whatever their value looks like.
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)
# Name components that make a header, parameter or JSON key a credential.
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "apikey",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "cookie",
        "jwt",
        "bearer",
        "signature",
        "privatekey",
        "accesskey",
        "secretkey",
        "sessionid",
    }
)
_SECRET_PAIRS = frozenset(
    {("api", "key"), ("private", "key"), ("access", "key"), ("secret", "key"), ("session", "id")}
)
_SECRET_SUFFIXES = ("token", "secret", "apikey", "passwd", "credentials")
_SECRET_INFIXES = ("password", "secret", "apikey", "privatekey")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_WORD = re.compile(r"[a-z0-9]+")

# Known token shapes. Kept conservative: each has a distinctive prefix or frame.
TOKEN_SHAPES = re.compile(
    r"-----BEGIN[A-Z ]{0,40}PRIVATE KEY-----(?:.*?-----END[A-Z ]{0,40}PRIVATE KEY-----|.*\Z)"
    r"|sk-ant-[A-Za-z0-9_\-]{8,}"
    r"|\bsk-[A-Za-z0-9_\-]{16,}"
    r"|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}"
    r"|AIza[0-9A-Za-z_\-]{35}"
    r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    re.DOTALL,
)
# A "key": "value" pair inside text that is not a whole JSON document
# (SSE data lines, NDJSON, a truncated body).
_JSON_PAIR = re.compile(r'"([^"\\]{1,100})"(\s*:\s*)"((?:[^"\\]|\\.)*)"')
# Shorter values are too likely to collide with ordinary text to scrub by value.
MIN_SCRUB_LEN = 6


@functools.lru_cache(maxsize=8192)  # the same few header names and JSON keys recur
def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    if lowered in _SECRET_HEADERS:
        return True
    words = _WORD.findall(_CAMEL.sub(r"\1_\2", name).lower())
    if any(w in _SECRET_WORDS for w in words):
        return True
    if any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words)):
        return True
    # Run-together names: "refreshtoken", "clientsecret", "dbpassword".
    squashed = "".join(words)
    return squashed.endswith(_SECRET_SUFFIXES) or any(w in squashed for w in _SECRET_INFIXES)


@dataclass(frozen=True)
class Redactor:
    """Replaces secrets; with a fingerprint key, equal secrets get equal tags."""

    fingerprint_key: bytes | None = None

    def mask(self, secret: str) -> str:
        if self.fingerprint_key is None:
            return REDACTED
        digest = hmac.new(
            self.fingerprint_key, secret.encode("utf-8", "surrogateescape"), hashlib.sha256
        ).hexdigest()
        return f"[REDACTED:{digest[:12]}]"

    # -- text -------------------------------------------------------------

    def scrub(self, text: str, known: Iterable[str] = ()) -> str:
        """Replace token shapes and already-known secret values in free text."""
        text = TOKEN_SHAPES.sub(lambda m: self.mask(m.group(0)), text)
        for value in sorted(known, key=len, reverse=True):
            if len(value) >= MIN_SCRUB_LEN and value in text:
                text = text.replace(value, self.mask(value))
        return text

    # -- headers ----------------------------------------------------------

    def headers(
        self, fields: Iterable[tuple[str, str]], known: Iterable[str] = ()
    ) -> tuple[dict[str, str], set[str]]:
        """Lower-cased header dict (repeats joined by ', ') and the secrets it removed."""
        fields = [(name.lower(), value) for name, value in fields]
        found: set[str] = set()
        for key, value in fields:
            if is_secret_name(key):
                found.update(_secret_parts(value))
        scrub_with = found.union(known)
        # Most headers hold nothing to scrub: one look at all of them decides.
        needs_scrub = self._has_secret("\n".join(v for _, v in fields), scrub_with)
        out: dict[str, str] = {}
        for key, value in fields:
            if is_secret_name(key):
                clean = self.mask(value)
            else:
                clean = self.scrub(value, scrub_with) if needs_scrub else value
            out[key] = f"{out[key]}, {clean}" if key in out else clean
        return out, found

    @staticmethod
    def _has_secret(text: str, known: set[str]) -> bool:
        return TOKEN_SHAPES.search(text) is not None or any(
            len(k) >= MIN_SCRUB_LEN and k in text for k in known
        )

    # -- URLs -------------------------------------------------------------

    def path(self, path: str, known: Iterable[str] = ()) -> tuple[str, set[str]]:
        """Redact credential-named query parameters, then shapes and known values."""
        found: set[str] = set()
        base, sep, query = path.partition("?")
        if sep:
            parts = []
            for item in query.split("&"):
                name, eq, value = item.partition("=")
                if eq and is_secret_name(unquote_plus(name)):
                    found.add(value)
                    found.add(unquote_plus(value))
                    parts.append(f"{name}={quote(self.mask(unquote_plus(value)), safe='[]:')}")
                else:
                    parts.append(item)
            path = base + "?" + "&".join(parts)
        return self.scrub(path, found | set(known)), found

    # -- bodies -----------------------------------------------------------

    def body(self, data: bytes, content_type: str = "", known: set[str] | None = None) -> bytes:
        """Redact a body of any type; binary bytes survive unchanged around the edits.

        Secrets found by name are added to `known`, so that a caller redacting
        several bodies of one exchange scrubs each with what the others held.
        """
        known = set() if known is None else known
        text = data.decode("utf-8", "surrogateescape")
        ctype = content_type.lower()
        stripped = text.lstrip()
        if stripped[:1] in ("{", "[") or "json" in ctype:
            try:
                doc = json.loads(text)
            except ValueError:
                pass
            else:
                text = self.scrub(json.dumps(self._json(doc, known), ensure_ascii=False), known)
                try:
                    return text.encode("utf-8", "surrogateescape")
                except UnicodeEncodeError:  # JSON held "\ud800": keep it escaped
                    return text.encode("utf-8", "backslashreplace")
        if "x-www-form-urlencoded" in ctype:
            text, found = self.path("?" + text, known)
            text = text[1:]
            known |= found
        text = _JSON_PAIR.sub(lambda m: self._json_pair(m, known), text)
        return self.scrub(text, known).encode("utf-8", "surrogateescape")

    def _json(self, node: object, known: set[str]) -> object:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if is_secret_name(str(key)) and value not in (None, "", [], {}):
                    secret = value if isinstance(value, str) else json.dumps(value)
                    known.update(_secret_parts(secret))
                    out[key] = self.mask(secret)
                else:
                    out[key] = self._json(value, known)
            return out
        if isinstance(node, list):
            return [self._json(item, known) for item in node]
        if isinstance(node, str):  # may itself hold JSON text: '{"api_key": "..."}'
            text = _JSON_PAIR.sub(lambda m: self._json_pair(m, known), node)
            return self.scrub(text, known)
        return node

    def _json_pair(self, m: re.Match[str], known: set[str]) -> str:
        key, colon, value = m.groups()
        if not is_secret_name(key) or not value:
            return m.group(0)
        known.update(_secret_parts(value))
        return f'"{key}"{colon}"{self.mask(value)}"'


def _secret_parts(value: str) -> set[str]:
    """The value itself, plus what follows an auth scheme ("Bearer xyz" -> "xyz")."""
    parts = {value}
    scheme, _, rest = value.partition(" ")
    if rest and scheme.isalpha():
        parts.add(rest.strip())
    # Cookie headers carry name=value pairs; each value is a secret of its own.
    for pair in value.split(";"):
        _, eq, cookie_value = pair.strip().partition("=")
        if eq and cookie_value:
            parts.add(cookie_value)
    return {p for p in parts if p}
