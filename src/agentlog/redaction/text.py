"""Finding secrets in text that is not one whole JSON document (pure).

SSE and NDJSON streams, JSON escaped inside strings, a body cut short by the
cap, prose with a `.env` file pasted in, a header that holds a URL. Each finder
returns spans (start, end) of `text` to mask; `apply` masks them all at once,
so one finder never sees another's "[REDACTED]".
"""

import json
import re
from collections.abc import Callable, Iterable
from urllib.parse import unquote_plus

from agentlog.redaction.names import (
    is_password_name,
    is_secret_name,
    is_secret_param,
    looks_like_secret,
)
from agentlog.redaction.shapes import cut_token_start, token_spans

Span = tuple[int, int]
# Shorter values are too likely to collide with ordinary text to scrub by value.
MIN_SCRUB_LEN = 6

# "key": at any level of escaping ("key", \"key\", \\\"key\\\"), then its value.
_JSON_KEY = re.compile(r'(\\*)"([^"\\\n]{1,100})\1"[ \t]*:[ \t]*')
_PLAIN_STRING_REST = re.compile(r'(?:[^"\\]|\\.)*+"', re.DOTALL)
_BARE = re.compile(r"[^\s,}\]\\\"]*")
_NUMBER = re.compile(r"-?\d[\d.eE+-]*")
# Every credential name holds one of these (see names.py).
_NAME_HINTS = (
    *("pass", "pwd", "secret", "token", "key", "auth", "credential", "cookie", "jwt"),
    *("bearer", "signature", "sess"),
)
# Free-text assignments: .env, shell, YAML, ini, TOML, CLI flags.
_ASSIGNMENT = re.compile(
    r"(?<![\w.$])(?P<name>[A-Za-z_][\w.-]{0,80})"
    r"[ \t]*(?::=|=>|=|:)[ \t]*"
    r"(?P<quote>[\"'`]?)(?P<value>[^\s\"'`,;]+)"
)
_AUTH_SCHEME = re.compile(r"\b(?:[Bb]earer|Basic|Token|Bot)[ \t]+([A-Za-z0-9._~+/=-]+)")
_NETRC = re.compile(r"\blogin[ \t]+\S+[ \t]+password[ \t]+(\S+)")
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s\"'<>`\\]+")
_USERINFO_PASSWORD = re.compile(r"//[^/\s:@]*:([^/\s@]+)@")
# A parameter inside a URL: "?a=1&b=2;c=3#d=4".
_URL_PARAM = re.compile(r"[?&;#]([^=&;#\s\"'<>\\]{1,100})=([^&;#\s\"'<>\\]*)")
_LEADING_PARAM = re.compile(r"([A-Za-z_][\w.-]{0,60})=([^&;#\s\"'<>\\]+)")
# A parameter outside a URL we recognise (a relative one, a form in prose).
_LOOSE_PARAM = re.compile(r"[?&]([^=&;#\s\"'<>\\]{1,100})=([^&;#\s\"'<>\\]*)")


def apply(text: str, spans: Iterable[Span], mask: Callable[[str], str]) -> str:
    """Mask every span; overlapping or touching spans are masked as one."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    if not merged:
        return text
    out, pos = [], 0
    for start, end in merged:
        out += [text[pos:start], mask(text[start:end])]
        pos = end
    out.append(text[pos:])
    return "".join(out)


# -- JSON inside text -------------------------------------------------------


def json_value_end(text: str, start: int, quote: str = '"') -> int:
    """Where the JSON value at `start` ends; the end of the text if it is cut
    short. `quote` is the string delimiter at this level of escaping."""
    n = len(text)
    if start >= n:
        return n
    if text.startswith(quote, start):
        return _string_end(text, start + len(quote), quote)
    if text[start] not in "{[":
        m = _BARE.match(text, start)
        return m.end() if m else start
    depth, i = 0, start
    while i < n:
        c = text[i]
        if text.startswith(quote, i):
            i = _string_end(text, i + len(quote), quote)
            continue
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _string_end(text: str, i: int, quote: str) -> int:
    if quote == '"':
        m = _PLAIN_STRING_REST.match(text, i)
        return m.end() if m else len(text)
    # Escaped: the closing quote is `quote` not preceded by one more backslash.
    while (j := text.find(quote, i)) >= 0:
        if j == 0 or text[j - 1] != "\\":
            return j + len(quote)
        i = j + len(quote)
    return len(text)


def json_pairs(text: str, found: set[str]) -> list[Span]:
    """Values under credential-named keys, at any escaping level, whatever
    their type, and to the end of the text if they are cut short."""
    spans, pos = [], 0
    while m := _JSON_KEY.search(text, pos):
        pos = m.end()
        if not is_secret_name(m.group(2)):
            continue
        quote = m.group(1) + '"'
        end = json_value_end(text, pos, quote)
        value = text[pos:end]
        if value.startswith(quote):  # mask the string's content, keep its quotes
            closed = end - len(quote) if value.endswith(quote) and len(value) > len(quote) else end
            start, end_ = pos + len(quote), closed
        elif value[:1] in ("{", "[") or _NUMBER.fullmatch(value) or end == len(text):
            start, end_ = pos, end
        else:  # code, not JSON: {"password": password}, {"Authorization": f"Bearer {t}"}
            continue
        if end_ > start and value not in ("null", "true", "false"):
            spans.append((start, end_))
            found.update(_unescaped(text[start:end_], len(quote) - 1))
        pos = max(pos, end)
    return spans


def _unescaped(raw: str, level: int) -> set[str]:
    """A string's content as written, and as it reads once its escapes are undone."""
    values, value = {raw}, raw
    for _ in range(level + 1):
        try:
            value = json.loads(f'"{value}"')
        except ValueError:
            break
        values.add(value)
    return values


# -- free text ----------------------------------------------------------------


def assignments(text: str, found: set[str]) -> list[Span]:
    """`NAME=value`, `name: value`, `--name=value` with a credential name and a
    value that looks like a secret; a value running to the end of the text may
    be cut short, so it is masked whatever it looks like."""
    spans = []
    for m in _ASSIGNMENT.finditer(text):
        name, value = m.group("name"), m.group("value")
        if not is_secret_name(name.rsplit(".", 1)[-1]):
            continue
        cut = m.end() == len(text)
        after = text[m.end() : m.end() + 2].lstrip("\"'`")
        ends_line = after[:1] in ("", "\n", "\r")
        if cut or looks_like_secret(value, is_password_name(name), ends_line):
            spans.append(m.span("value"))
            found.add(value)
    return spans


def auth_schemes(text: str, found: set[str]) -> list[Span]:
    """`Bearer xyz`, `Basic dXNl...` in text (a curl command in a prompt), and
    the password of a `.netrc` line (`machine h login u password p`)."""
    spans = []
    for m in _NETRC.finditer(text):
        spans.append(m.span(1))
        found.add(m.group(1))
    for m in _AUTH_SCHEME.finditer(text):
        value = m.group(1)
        if m.end() == len(text) or (len(value) >= 8 and not value.isalpha()) or _mixed(value):
            spans.append(m.span(1))
            found.add(value)
    return spans


def _mixed(value: str) -> bool:
    return len(value) >= 8 and not value.islower() and not value.isupper()


# -- URLs -----------------------------------------------------------------------


def url_params(text: str, found: set[str], whole_url: bool = False) -> list[Span]:
    """Credential parameters of URLs in `text` (query, `;` parameters,
    fragment) and passwords in `user:password@`. With `whole_url`, `text` is
    itself a URL or a path (a request line, a Location header)."""
    spans: list[Span] = []
    if whole_url and (m := _LEADING_PARAM.match(text)) and is_secret_param(m.group(1)):
        spans.append(m.span(2))  # a header that is one parameter: "password=..."
        found.add(m.group(2))
    urls = [(0, len(text))] if whole_url else [m.span() for m in _URL.finditer(text)]
    for start, end in urls:
        if m := _USERINFO_PASSWORD.search(text, start, end):
            spans.append(m.span(1))
            found.add(m.group(1))
        spans += _params(_URL_PARAM, text, start, end, found)
    if not whole_url and ("?" in text or "&" in text):
        spans += _params(_LOOSE_PARAM, text, 0, len(text), found)
    return spans


def _params(regex: re.Pattern[str], text: str, start: int, end: int, found: set[str]):
    spans = []
    for m in regex.finditer(text, start, end):
        value = m.group(2)
        if value and is_secret_param(unquote_plus(m.group(1))):
            spans.append(m.span(2))
            found.update({value, unquote_plus(value)})
        elif "=" in value:  # a URL inside a parameter: ?next=https://app/cb?code=...
            spans += _params(_URL_PARAM, text, m.start(2), m.end(2), found)
    return spans


# -- shapes and known values -------------------------------------------------------


def known_values(text: str, known: Iterable[str]) -> list[Span]:
    spans = []
    for value in known:
        if len(value) < MIN_SCRUB_LEN:
            continue
        i = text.find(value)
        while i >= 0:
            spans.append((i, i + len(value)))
            i = text.find(value, i + len(value))
    return spans


def cut_tail(text: str, known: Iterable[str]) -> list[Span]:
    """The start of a token, or of a known secret, that the end of the text cut short."""
    spans = []
    start = cut_token_start(text)
    if start is not None:
        spans.append((start, len(text)))
    for value in known:
        if len(value) < MIN_SCRUB_LEN:
            continue
        head = value[:MIN_SCRUB_LEN]
        i = text.find(head, max(0, len(text) - len(value)))
        while i >= 0:
            if value.startswith(text[i:]):
                spans.append((i, len(text)))
                break
            i = text.find(head, i + 1)
    return spans


def secrets_in_text(text: str, found: set[str], known: Iterable[str], cut: bool) -> list[Span]:
    """Every finder on text of unknown structure. Values caught by name are
    added to `found`; `cut` says the text may end inside a secret."""
    # Each finder needs something most text lacks: a credential-like word, a
    # quote, an "=". Looking for those first is much cheaper than the finders.
    lowered = text.lower()
    named = any(hint in lowered for hint in _NAME_HINTS)
    spans = json_pairs(text, found) if named and '"' in text else []
    if named and ("=" in text or ":" in text):
        spans += assignments(text, found)
    if any(hint in text for hint in ("earer", "Basic", "Token", "Bot", "login")):
        spans += auth_schemes(text, found)
    if "=" in text or "@" in text:
        spans += url_params(text, found)
    spans += token_spans(text)
    values = set(known) | found
    spans += known_values(text, values)
    if cut:
        spans += cut_tail(text, values)
    return spans
