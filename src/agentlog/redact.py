"""Redaction: keep secrets out of everything agentlog writes (pure functions).

Three nets, applied together:
1. by name: headers, query and form parameters, multipart fields, JSON keys
   (at any depth, escaped inside strings, in SSE/NDJSON lines) and free-text
   assignments (`.env`, YAML, shell) whose name looks like a credential have
   their whole value replaced;
2. by shape: the token formats of `redaction.shapes` (sk-ant-..., ghp_...,
   AKIA..., npm_..., private key blocks, JWTs, ...) are replaced wherever
   they appear;
3. by value: every value caught by 1. is also scrubbed from the rest of the
   same exchange (a bearer token echoed in a body, a cookie copied to a URL).
A streamed reply's pieces are joined per stream first (`redaction.streams`), so
that a secret split across its events is found whole.
A body may have been cut by the cap: a value, a token or a known secret that
runs to the end of the text is masked from its start.
"""

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote_plus

from agentlog.redaction import multipart, streams
from agentlog.redaction.names import is_secret_header, is_secret_name, secret_parts
from agentlog.redaction.shapes import has_token, token_spans
from agentlog.redaction.text import (
    MIN_SCRUB_LEN,
    apply,
    known_values,
    secrets_in_text,
    url_params,
)

__all__ = ["MIN_SCRUB_LEN", "REDACTED", "Redactor", "is_secret_header", "is_secret_name"]

REDACTED = "[REDACTED]"
_ANY_PARAM = re.compile(r"[?&;#]([^=&;#]{1,100})=([^&;#]*)")
# Strings inside JSON nest at most this deep before they are only scrubbed.
_MAX_DEPTH = 8


@dataclass(frozen=True)
class Redactor:
    """Replaces secrets; with a fingerprint key, equal secrets get equal tags."""

    fingerprint_key: bytes | None = None

    def mask(self, secret: str) -> str:
        if self.fingerprint_key is None:
            return REDACTED
        try:
            data = secret.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate read from a JSON escape ("\ud800")
            data = secret.encode("utf-8", "surrogatepass")
        digest = hmac.new(self.fingerprint_key, data, hashlib.sha256).hexdigest()
        return f"[REDACTED:{digest[:12]}]"

    # -- text -------------------------------------------------------------

    def scrub(self, text: str, known: Iterable[str] = ()) -> str:
        """Replace token shapes, credential URL parameters and already-known
        secret values in a short free text (a reason phrase, an error)."""
        found: set[str] = set()
        spans = token_spans(text) + url_params(text, found)
        return apply(text, spans + known_values(text, found.union(known)), self.mask)

    # -- headers ----------------------------------------------------------

    def headers(
        self, fields: Iterable[tuple[str, str]], known: Iterable[str] = ()
    ) -> tuple[dict[str, str], set[str]]:
        """Lower-cased header dict (repeats joined by ', ') and the secrets it removed."""
        fields = [(name.lower(), value) for name, value in fields]
        found: set[str] = set()
        plain: list[str] = []
        for key, value in fields:
            if is_secret_header(key):
                found.update(secret_parts(value))
            else:
                plain.append(value)
        # Most headers hold nothing to scrub: one look at all of them decides.
        joined = "\n".join(plain)
        known = set(known)
        params = {v: url_params(v, found, whole_url=True) for v in plain if "=" in v or "@" in v}
        scrub_with = found | known
        needs_scrub = (
            any(params.values())
            or has_token(joined)
            or any(len(k) >= MIN_SCRUB_LEN and k in joined for k in scrub_with)
        )
        out: dict[str, str] = {}
        for key, value in fields:
            if is_secret_header(key):
                clean = self.mask(value)
            elif needs_scrub:
                spans = params.get(value, []) + token_spans(value)
                clean = apply(value, spans + known_values(value, scrub_with), self.mask)
            else:
                clean = value
            out[key] = f"{out[key]}, {clean}" if key in out else clean
        return out, found

    # -- URLs -------------------------------------------------------------

    def path(self, path: str, known: Iterable[str] = ()) -> tuple[str, set[str]]:
        """Redact credential parameters (query, `;`, fragment), then token shapes
        and known values, also where percent-encoding hides them."""
        found: set[str] = set()
        spans = url_params(path, found, whole_url=True) + token_spans(path)
        values = found.union(known)
        for start, end in _param_values(path):  # what percent-encoding hides
            decoded = unquote_plus(path[start:end])
            if decoded != path[start:end] and (
                has_token(decoded)
                or any(len(k) >= MIN_SCRUB_LEN and k in decoded for k in values)
                or ("=" in decoded and url_params(decoded, found, whole_url=True))
            ):
                spans.append((start, end))
        return apply(path, spans + known_values(path, values), self.mask), found

    # -- bodies -----------------------------------------------------------

    def body(self, data: bytes, content_type: str = "", known: set[str] | None = None) -> bytes:
        """Redact a body of any type; binary bytes survive unchanged around the edits.

        Secrets found by name are added to `known`, so that a caller redacting
        several bodies of one exchange scrubs each with what the others held.
        The body may have been cut at any byte.
        """
        known = set() if known is None else known
        text = data.decode("utf-8", "surrogateescape")
        bound = multipart.boundary(text, content_type)
        if bound is not None:

            def mask_part(content: str) -> str:
                known.update(secret_parts(content))
                return self.mask(content)

            def redact_part(content: str, part_type: str) -> str:
                return self._text_body(content, part_type, known)

            text = multipart.redact(text, bound, mask_part, redact_part)
            text = apply(text, known_values(text, known), self.mask)  # learnt from later parts
        elif streams.is_stream(text, content_type.lower()):
            # Split secrets first, while each is still whole in the joined pieces.
            text = streams.redact(text, known, self.mask)
            learnt = len(known)
            text = self._text_body(text, content_type.lower(), known)
            if len(known) > learnt:  # an event named a secret that others hold in pieces
                text = streams.redact(text, known, self.mask)
        else:
            text = self._text_body(text, content_type.lower(), known)
        try:
            return text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # JSON held "\ud800": keep it escaped
            return text.encode("utf-8", "backslashreplace")

    def _text_body(self, text: str, ctype: str, known: set[str]) -> str:
        if text.lstrip()[:1] in ("{", "[") or "json" in ctype:
            try:
                doc = json.loads(text)
            except ValueError:
                pass
            else:
                clean = self._json(doc, known, 0)
                if clean != doc:  # keep the body byte for byte when nothing was secret
                    text = json.dumps(clean, ensure_ascii=False)
                return apply(text, known_values(text, known), self.mask)
        found: set[str] = set()
        spans: list[tuple[int, int]] = []
        if "x-www-form-urlencoded" in ctype:
            spans = [(s - 1, e - 1) for s, e in url_params("?" + text, found, whole_url=True)]
        spans += secrets_in_text(text, found, known, cut=True)
        known |= found
        return apply(text, spans, self.mask)

    def _json(self, node: object, known: set[str], depth: int) -> object:
        if isinstance(node, dict):
            out: dict[object, object] = {}
            # An OAuth code exchange (RFC 6749 4.1.3) in JSON: its "code" is a credential.
            exchange = node.get("grant_type") == "authorization_code"
            for key, value in node.items():
                named = is_secret_name(str(key)) or (exchange and key == "code")
                if named and value not in (None, "", [], {}, True, False):
                    secret = value if isinstance(value, str) else json.dumps(value)
                    _learn(value, known)
                    out[key] = self.mask(secret)
                else:
                    out[key] = self._json(value, known, depth)
            return out
        if isinstance(node, list):
            return [self._json(item, known, depth) for item in node]
        if isinstance(node, str):  # may hold JSON text, a .env file, a URL
            return self._string(node, known, depth)
        return node

    def _string(self, text: str, known: set[str], depth: int) -> str:
        stripped = text.lstrip()
        if stripped[:1] in ("{", "[") and depth < _MAX_DEPTH:
            try:
                doc = json.loads(text)
            except ValueError:
                pass
            else:
                clean = self._json(doc, known, depth + 1)
                return text if clean == doc else json.dumps(clean, ensure_ascii=False)
        found: set[str] = set()
        spans = secrets_in_text(text, found, known, cut=False)
        known |= found
        return apply(text, spans, self.mask)


def _learn(value: object, known: set[str], named: bool = True) -> None:
    """Remember a masked value's secrets: its strings while they sit under a
    credential name (a list of secrets, an object's "password"), not the rest
    of an object ("type": "oauth2")."""
    if isinstance(value, str):
        if named:
            known.update(secret_parts(value))
    elif isinstance(value, list):
        for item in value:
            _learn(item, known, named)
    elif isinstance(value, dict):
        for key, item in value.items():
            _learn(item, known, is_secret_name(str(key)))


def _param_values(path: str) -> list[tuple[int, int]]:
    """Spans of every parameter value in a URL or path, whatever its name."""
    return [m.span(2) for m in _ANY_PARAM.finditer(path)]
