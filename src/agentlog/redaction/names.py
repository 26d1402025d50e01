"""Which names hold credentials, and which values look like one (pure)."""

import base64
import binascii
import functools
import itertools
import re

# Headers that are credentials whatever their value looks like.
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)
# Name components that make a header, parameter or key a credential.
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "passcode",
        "secret",
        "secrets",
        "token",
        "apikey",
        "auth",
        "authorization",
        "authentication",
        "credential",
        "credentials",
        "cookie",
        "jwt",
        "bearer",
        "signature",
        "privatekey",
        "accesskey",
        "secretkey",
        "accountkey",
        "sessionid",
        "sessid",
        "jsessionid",
        "phpsessid",
    }
)
# "<word> key" is a credential for these words (api key, subscription key, ...),
# not for the many ordinary keys (sort key, cache key, public key, primary key).
_KEY_QUALIFIERS = frozenset(
    {
        "api",
        "private",
        "access",
        "secret",
        "subscription",
        "functions",
        "function",
        "account",
        "master",
        "signing",
        "encryption",
        "shared",
        "app",
        "application",
        "consumer",
        "license",
        "client",
        "session",
        "service",
        "admin",
        "write",
        "deploy",
        "hmac",
        "storage",
        "sas",
        "ingest",
        "host",
    }
)
_SECRET_PAIRS = frozenset(
    {("session", "id"), ("client", "secret"), ("refresh", "token"), ("code", "verifier")}
)
# A secret word followed by one of these names a fact about the secret, not the
# secret: token_count, auth_type, token_url, secret_name, expires_in.
_DESCRIBES = frozenset(
    {
        "count",
        "counts",
        "limit",
        "limits",
        "type",
        "types",
        "length",
        "len",
        "size",
        "usage",
        "url",
        "uri",
        "endpoint",
        "name",
        "names",
        "file",
        "path",
        "ttl",
        "expiry",
        "expires",
        "expiration",
        "in",
        "at",
        "id",
        "ids",
        "remaining",
        "reset",
        "used",
        "budget",
        "format",
        "prefix",
        "index",
    }
)
_SECRET_SUFFIXES = ("token", "secret", "apikey", "passwd", "password", "credentials")
_SECRET_INFIXES = ("password", "apikey", "privatekey", "accesskey", "secretkey", "clientsecret")
# Query parameters that carry credentials though their names say little
# (Google's ?key=, Azure SAS ?sig=, an OAuth callback's ?code=).
_SECRET_PARAMS = frozenset({"key", "sig", "code", "hmac", "otp", "ticket", "sas", "apikey"})
# Headers ending in "-key" are credentials (Ocp-Apim-Subscription-Key,
# x-functions-key, ...), except these.
_NOT_SECRET_HEADERS = frozenset({"idempotency-key", "x-idempotency-key", "sec-websocket-key"})
# Set-Cookie attributes: their values are not the cookie.
_COOKIE_ATTRIBUTES = frozenset(
    {
        "path",
        "domain",
        "expires",
        "max-age",
        "samesite",
        "secure",
        "httponly",
        "priority",
        "partitioned",
        "version",
        "comment",
    }
)
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_WORD = re.compile(r"[a-z0-9]+")


def words(name: str) -> list[str]:
    """Name words: X-Api-Key -> x, api, key; refreshToken -> refresh, token."""
    return _WORD.findall(_CAMEL.sub(r"\1_\2", name).lower())


@functools.lru_cache(maxsize=8192)  # the same few header names and JSON keys recur
def is_secret_name(name: str) -> bool:
    """A header, parameter, form field, JSON key or variable named like a credential."""
    if name.lower() in _SECRET_HEADERS:
        return True
    parts = words(name)
    if not parts:
        return False
    if tuple(parts[-2:]) in _SECRET_PAIRS:
        return True
    if len(parts) > 1 and parts[-1] in _DESCRIBES:
        return False
    if any(w in _SECRET_WORDS for w in parts):
        return True
    if any(a in _KEY_QUALIFIERS and b == "key" for a, b in itertools.pairwise(parts)):
        return True
    # Run-together names: "refreshtoken", "clientsecret", "dbpassword".
    squashed = "".join(parts)
    return squashed.endswith(_SECRET_SUFFIXES) or any(w in squashed for w in _SECRET_INFIXES)


@functools.lru_cache(maxsize=4096)
def is_secret_header(name: str) -> bool:
    lowered = name.lower()
    if is_secret_name(lowered):
        return True
    return lowered.endswith("-key") and lowered not in _NOT_SECRET_HEADERS


@functools.lru_cache(maxsize=4096)
def is_secret_param(name: str) -> bool:
    """A URL query or form parameter that carries a credential."""
    return name.lower() in _SECRET_PARAMS or is_secret_name(name)


def secret_parts(value: str) -> set[str]:
    """The value itself, plus the pieces that may turn up alone elsewhere: what
    follows an auth scheme ("Bearer xyz" -> "xyz"), the password of Basic
    credentials, and each cookie's value (not its attributes)."""
    parts = {value}
    scheme, _, rest = value.partition(" ")
    if rest and scheme.isalpha():
        rest = rest.strip()
        parts.add(rest)
        if scheme.lower() == "basic":
            parts.update(_basic_credentials(rest))
    for pair in value.split(";"):
        name, eq, cookie_value = pair.strip().partition("=")
        if eq and cookie_value and name.strip().lower() not in _COOKIE_ATTRIBUTES:
            parts.add(cookie_value.strip())
    return {p for p in parts if p}


def _basic_credentials(encoded: str) -> set[str]:
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return set()
    _, colon, password = decoded.partition(":")
    return {password} if colon and password else set()


_CODE_LIKE = re.compile(r"[()\[\]{}<>,;]")
_IDENTIFIER_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")  # os.environ, self.token
_PLAIN_WORDS = re.compile(
    r"[A-Za-z][a-z]*(?:[A-Z][a-z]*)*|[a-z]+(?:[_-][a-z]+)*|[A-Z]+(?:_[A-Z]+)*"
)
_PLACEHOLDER = re.compile(r"[$%]|\{\{|<|(?i:none|null|nil|true|false|undefined|required)$")


_TYPE_NAMES = frozenset(
    {"string", "str", "number", "int", "integer", "bool", "boolean", "bytes", "any", "object"}
)


def is_password_name(name: str) -> bool:
    return any(w.startswith(("pass", "pwd")) for w in words(name))


def looks_like_secret(value: str, password: bool = False, ends_line: bool = False) -> bool:
    """Whether a value assigned to a credential name in free text (`.env`, YAML,
    shell, ini) looks like a real secret rather than code or prose: no code
    punctuation, not a dotted identifier, not a plain word (but a password
    that ends its line, as in a config file, may be one), some digits or
    mixed case."""
    if len(value) < (4 if password else 6) or _CODE_LIKE.search(value):
        return False
    if _PLACEHOLDER.match(value) or _IDENTIFIER_PATH.fullmatch(value):
        return False
    if _PLAIN_WORDS.fullmatch(value):
        return password and ends_line and value.lower() not in _TYPE_NAMES
    if password:
        return True
    return any(c.isdigit() for c in value) or (
        any(c.isupper() for c in value) and any(c.islower() for c in value)
    )
