"""The catalogue of token formats, and the regexes built from it (pure).

Each entry is a format with a distinctive literal prefix, taken from the rules
that gitleaks (config/gitleaks.toml), trufflehog and detect-secrets keep for
the same providers; formats with no prefix of their own (Mistral, Cohere,
Azure OpenAI keys, ...) are left to the name-based net. An entry is a prefix
and parts (literals and runs of characters of realistic length): the regexes
are built from it, with the lengths relaxed, and the tests generate realistic
tokens from the same entries.

Two regexes come out: TOKEN_SHAPES finds whole tokens (`token_spans`), and a
second one finds a token cut short by the body cap, a prefix and part of its
body running to the end of the text (`cut_token_start`).
"""

import re
import string
from dataclasses import dataclass

ALNUM = string.ascii_letters + string.digits
LOWER_ALNUM = string.ascii_lowercase + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits
ALPHA = string.ascii_letters
DIGITS = string.digits
HEX = "0123456789abcdef"
HEX_ANY = HEX + "ABCDEF"
B64URL = ALNUM + "_-"
B64 = ALNUM + "+/"


@dataclass(frozen=True)
class Run:
    """`lo`..`hi` characters from `alphabet` (the realistic length of the format)."""

    alphabet: str
    lo: int
    hi: int


Part = str | Run


@dataclass(frozen=True)
class Shape:
    name: str
    prefixes: tuple[str, ...]
    parts: tuple[Part, ...]
    # The prefix is short or common: it must not follow a letter or digit
    # (an escape such as %20 or \n before it still counts as a start).
    word_start: bool = False
    # Characters that come before the prefix in real tokens and are left
    # visible (at most 4: Azure's "abc8" in "abc8Q~..."). Only for samples.
    before: Run | None = None


def _s(name: str, prefixes: str | tuple[str, ...], *parts: Part, word_start: bool = False):
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return Shape(name, prefixes, parts, word_start)


_SLACK = (Run(DIGITS, 10, 13), "-", Run(DIGITS, 10, 13), "-", Run(ALNUM, 24, 32))

SHAPES: tuple[Shape, ...] = (
    # AI providers
    _s(
        "anthropic",
        ("sk-ant-api03-", "sk-ant-admin01-", "sk-ant-oat01-"),
        Run(B64URL, 93, 93),
        "AA",
    ),
    _s(
        "openai-project",
        ("sk-proj-", "sk-svcacct-", "sk-admin-"),
        Run(B64URL, 74, 74),
        "T3BlbkFJ",
        Run(B64URL, 74, 74),
    ),
    _s("openai-legacy", "sk-", Run(ALNUM, 20, 20), "T3BlbkFJ", Run(ALNUM, 20, 20), word_start=True),
    _s("openrouter", "sk-or-v1-", Run(HEX, 64, 64)),
    _s("sk-generic", "sk-", Run(B64URL, 22, 48), word_start=True),  # DeepSeek, Moonshot, ...
    _s("google-api-key", "AIza", Run(B64URL, 35, 35)),
    _s("google-oauth-access", "ya29.", Run(B64URL, 100, 220)),
    _s("google-oauth-refresh", "1//0", Run(B64URL, 60, 100), word_start=True),
    _s("google-client-secret", "GOCSPX-", Run(B64URL, 28, 28)),
    _s("huggingface", ("hf_", "api_org_"), Run(ALPHA, 34, 34), word_start=True),
    _s("groq", "gsk_", Run(ALNUM, 52, 52)),
    _s("replicate", "r8_", Run(ALNUM, 37, 37), word_start=True),
    _s("perplexity", "pplx-", Run(ALNUM, 48, 48)),
    _s("xai", "xai-", Run(ALNUM, 80, 80), word_start=True),
    _s("tavily", "tvly-", Run(ALNUM, 32, 32)),
    _s("langsmith", ("lsv2_pt_", "lsv2_sk_"), Run(HEX, 32, 32), "_", Run(HEX, 10, 10)),
    _s("pinecone", "pcsk_", Run(ALNUM, 5, 6), "_", Run(ALNUM, 60, 64)),
    _s("fireworks", "fw_", Run(ALNUM, 24, 24), word_start=True),
    _s("cerebras", "csk-", Run(LOWER_ALNUM, 48, 48), word_start=True),
    _s("elevenlabs", "sk_", Run(HEX, 48, 48), word_start=True),
    # Code hosting, registries, CI
    _s("github", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), Run(ALNUM, 36, 36)),
    _s("github-fine-grained", "github_pat_", Run(ALNUM, 22, 22), "_", Run(ALNUM, 59, 59)),
    _s(
        "gitlab",
        (
            "glpat-",
            "gldt-",
            "glrt-",
            "glptt-",
            "glcbt-",
            "glft-",
            "glimt-",
            "glagent-",
            "gloas-",
            "glsoat-",
            "glffct-",
        ),
        Run(B64URL, 20, 20),
    ),
    _s("gitlab-runner-registration", "GR1348941", Run(B64URL, 20, 20)),
    _s("bitbucket-app-password", "ATBB", Run(ALNUM, 32, 32)),
    _s("atlassian", "ATATT3", Run(B64URL + "=", 186, 186)),
    _s("npm", "npm_", Run(ALNUM, 36, 36)),
    _s("pypi", "pypi-AgEIcHlwaS5vcmc", Run(B64URL, 70, 180)),
    _s("rubygems", "rubygems_", Run(HEX, 48, 48)),
    _s("docker-hub", "dckr_pat_", Run(B64URL, 27, 27)),
    _s("nuget", "oy2", Run(LOWER_ALNUM, 43, 43), word_start=True),
    _s("clojars", "CLOJARS_", Run(LOWER_ALNUM, 60, 60)),
    _s("sonarqube", ("squ_", "sqp_", "sqa_"), Run(HEX, 40, 40)),
    _s("buildkite", "bkua_", Run(HEX, 40, 40)),
    _s("circleci", "CCIPAT_", Run(ALNUM, 22, 22), "_", Run(HEX, 40, 40)),
    _s("sourcegraph", "sgp_", Run(HEX, 16, 16), "_", Run(HEX, 40, 40)),
    _s("postman", "PMAK-", Run(HEX, 24, 24), "-", Run(HEX, 34, 34)),
    _s("linear", "lin_api_", Run(ALNUM, 40, 40)),
    _s("notion", "ntn_", Run(ALNUM, 46, 46)),
    _s("notion-legacy", "secret_", Run(ALNUM, 43, 43), word_start=True),
    # Cloud, hosting, infrastructure
    _s("aws-access-key", ("AKIA", "ASIA", "ABIA", "ACCA"), Run(UPPER_ALNUM, 16, 16)),
    _s("aws-session-token", ("FwoGZXIvYXdzE", "IQoJb3JpZ2luX2Vj"), Run(B64 + "=", 200, 600)),
    _s("alibaba", "LTAI", Run(ALNUM, 20, 20), word_start=True),
    _s("digitalocean", ("dop_v1_", "doo_v1_", "dor_v1_"), Run(HEX, 64, 64)),
    _s("supabase", "sbp_", Run(HEX, 40, 40)),
    _s("supabase-secret", "sb_secret_", Run(B64URL, 31, 31)),
    _s("netlify", "nfp_", Run(ALNUM, 36, 36)),
    _s("render", "rnd_", Run(ALNUM, 32, 32)),
    _s("neon", "napi_", Run(LOWER_ALNUM, 64, 64)),
    _s("planetscale", ("pscale_tkn_", "pscale_oauth_", "pscale_pw_"), Run(B64URL, 43, 43)),
    _s("fly", "fo1_", Run(B64URL, 43, 43)),
    _s("fly-macaroon", ("fm1r_", "fm1a_", "fm2_"), Run(B64 + "=", 120, 400)),
    _s("heroku", "HRKU-AA", Run(B64URL, 58, 58)),
    _s("databricks", "dapi", Run(HEX, 32, 32), word_start=True),
    _s("vault", ("hvs.", "hvb."), Run(B64URL, 90, 120)),
    _s("doppler", ("dp.pt.", "dp.st.", "dp.ct.", "dp.sa."), Run(ALNUM, 43, 43)),
    _s("pulumi", "pul-", Run(HEX, 40, 40)),
    _s("openshift", "sha256~", Run(B64URL, 43, 43)),
    _s("cloudflare-origin-ca", "v1.0-", Run(HEX, 24, 24), "-", Run(HEX, 146, 146)),
    _s("age", "AGE-SECRET-KEY-1", Run("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58, 58)),
    _s("1password", "ops_eyJ", Run(B64 + "=", 250, 300)),
    _s("artifactory", "AKCp", Run(ALNUM, 69, 69)),
    _s("artifactory-reference", "cmVmd", Run(ALNUM, 59, 59)),
    _s("yandex", "AQVN", Run(B64URL, 35, 38), word_start=True),
    # Observability
    _s("sentry-user", "sntryu_", Run(HEX, 64, 64)),
    _s("sentry-org", "sntrys_eyJpYXQiO", Run(B64 + "=_", 150, 250)),
    _s("grafana-cloud", "glc_", Run(B64 + "=", 32, 120)),
    _s("grafana-service-account", "glsa_", Run(ALNUM, 32, 32), "_", Run(HEX, 8, 8)),
    _s("grafana-api-key", "eyJrIjoi", Run(ALNUM + "=", 70, 120)),
    _s("new-relic", ("NRAK-", "NRII-"), Run(UPPER_ALNUM, 27, 32)),
    _s("dynatrace", "dt0c01.", Run(UPPER_ALNUM, 24, 24), ".", Run(UPPER_ALNUM, 64, 64)),
    # Payments, commerce, messaging
    _s("stripe", ("sk_live_", "sk_test_", "rk_live_", "rk_test_", "sk_prod_"), Run(ALNUM, 24, 99)),
    _s("stripe-webhook", "whsec_", Run(ALNUM, 32, 32)),
    _s("square", ("sq0atp-", "sq0csp-"), Run(B64URL, 22, 43)),
    _s("square-access", "EAAA", Run(B64URL, 60, 60), word_start=True),
    _s("shopify", ("shpat_", "shpca_", "shppa_", "shpss_"), Run(HEX_ANY, 32, 32)),
    _s("shippo", ("shippo_live_", "shippo_test_"), Run(HEX, 40, 40)),
    _s("braintree", "access_token$production$", Run(LOWER_ALNUM, 16, 16), "$", Run(HEX, 32, 32)),
    _s("twilio", "SK", Run(HEX, 32, 32), word_start=True),
    _s("sendgrid", "SG.", Run(B64URL, 22, 22), ".", Run(B64URL, 43, 43)),
    _s("brevo", "xkeysib-", Run(HEX, 64, 64), "-", Run(ALNUM, 16, 16)),
    _s("mailgun", "key-", Run(HEX, 32, 32), word_start=True),
    _s("resend", "re_", Run(ALNUM, 8, 8), "_", Run(ALNUM, 24, 24), word_start=True),
    _s("slack", ("xoxb-", "xoxp-", "xoxs-", "xoxo-"), *_SLACK),
    _s("slack-other", ("xoxa-", "xoxr-", "xoxe-", "xoxe.xoxp-", "xoxe.xoxb-"), Run(ALNUM, 40, 160)),
    _s(
        "slack-app",
        "xapp-",
        Run(DIGITS, 1, 1),
        "-",
        Run(UPPER_ALNUM, 11, 11),
        "-",
        Run(DIGITS, 13, 13),
        "-",
        Run(HEX, 64, 64),
    ),
    _s(
        "slack-webhook",
        "hooks.slack.com/services/",
        Run(ALNUM, 9, 11),
        "/",
        Run(ALNUM, 9, 11),
        "/",
        Run(ALNUM, 24, 24),
    ),
    _s(
        "discord-webhook",
        ("discord.com/api/webhooks/", "discordapp.com/api/webhooks/"),
        Run(DIGITS, 17, 19),
        "/",
        Run(B64URL, 68, 68),
    ),
    _s(
        "discord-bot",
        ("MT", "Mj", "Mz", "ND", "NT", "Nj", "Nz", "OD", "OT"),
        Run(ALNUM, 22, 24),
        ".",
        Run(B64URL, 6, 6),
        ".",
        Run(B64URL, 27, 38),
        word_start=True,
    ),
    _s("facebook", ("EAAC", "EAAM"), Run(ALNUM, 100, 180), word_start=True),
    _s("twitter-bearer", "AAAAAAAAAAAAAAAAAAAAA", Run(ALNUM + "%", 80, 100)),
    _s("dropbox", "sl.", Run(B64URL, 130, 140), word_start=True),
    _s("mapbox-secret", "sk.eyJ", Run(B64URL, 60, 80), ".", Run(B64URL, 22, 22)),
    _s("adobe", "p8e-", Run(ALNUM, 32, 32), word_start=True),
    _s("easypost", ("EZAK", "EZTK"), Run(ALNUM, 54, 54)),
    _s("flutterwave", ("FLWSECK-", "FLWSECK_TEST-"), Run(HEX, 32, 32), "-X"),
    _s("prefect", "pnu_", Run(ALNUM, 36, 36)),
    _s("readme", "rdme_", Run(LOWER_ALNUM, 70, 70)),
    _s("scalingo", "tk-us-", Run(B64URL, 48, 48)),
    _s("typeform", "tfp_", Run(B64URL, 59, 59)),
    _s("duffel", ("duffel_live_", "duffel_test_"), Run(B64URL, 43, 43)),
    _s("frameio", "fio-u-", Run(B64URL, 64, 64)),
    _s("infracost", "ico-", Run(ALNUM, 32, 32), word_start=True),
    _s("clickhouse", "4b1d", Run(ALNUM, 38, 38), word_start=True),
    _s(
        "harness",
        ("pat.", "sat."),
        Run(B64URL, 22, 22),
        ".",
        Run(ALNUM, 24, 24),
        ".",
        Run(ALNUM, 20, 20),
        word_start=True,
    ),
    _s("octopus-deploy", "API-", Run(UPPER_ALNUM, 26, 26), word_start=True),
    # Generic frames
    _s(
        "jwt",
        "eyJ",
        Run(B64URL, 20, 120),
        ".eyJ",
        Run(B64URL, 40, 600),
        ".",
        Run(B64URL, 43, 342),
    ),
    Shape(
        "azure-ad-client-secret", ("Q~",), (Run(ALNUM + "_~.-", 31, 34),), before=Run(ALNUM, 4, 4)
    ),
)

# Private keys: a frame, not a prefix and a run. With no END line (cut short)
# everything from BEGIN on is masked.
_PEM = re.compile(
    r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    r"(?:[\s\S]{0,16384}?-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|[\s\S]*\Z)"
)
# Escapes that may stand right before a token that starts a word: %20 in a URL,
# \n or \u0022 in JSON text.
_AFTER_ESCAPE = (r"%[0-9A-Fa-f]{2}", r"\\[nrtbf]", r"\\u[0-9A-Fa-f]{4}")
# Every character any token is made of. Tokens are only looked for inside runs
# of these at least RUN_MIN long, which ordinary text has few of: one scan for
# runs is much cheaper than trying every shape at every position.
_TOKEN_CHARS = ALNUM + "_-.~+/=$%"
_RUN = re.compile(f"[{re.escape(_TOKEN_CHARS)}]{{16,}}")
_NOT_TOKEN_CHAR = re.compile(f"[^{re.escape(_TOKEN_CHARS)}]")
# A cut token is masked once this much of it is kept (shorter is no leak).
CUT_MIN = 8
# How far back from the end a cut token may start.
CUT_WINDOW = 4096


def _class(chars: str) -> str:
    return "[" + "".join(re.escape(c) for c in sorted(set(chars))) + "]"


def _normalised(parts: tuple[Part, ...]) -> list[Part]:
    """Fold literals made of a run's own characters into that run ("...AA")."""
    out: list[Part] = []
    for part in parts:
        prev = out[-1] if out else None
        if isinstance(part, str) and isinstance(prev, Run) and set(part) <= set(prev.alphabet):
            out[-1] = Run(prev.alphabet, prev.lo + len(part), prev.hi + len(part))
        else:
            out.append(part)
    return out


def _body_regex(shape: Shape) -> str:
    """The parts, lengths relaxed: a quarter shorter, and much longer at the end
    (a longer variant must not leave its tail visible). Runs are possessive when
    the next literal cannot be part of them, so hostile input cannot make the
    regex backtrack."""
    parts = _normalised(shape.parts)
    out = []
    for i, part in enumerate(parts):
        if isinstance(part, str):
            out.append(re.escape(part))
            continue
        last = i == len(parts) - 1
        lo = max(1, part.lo * 3 // 4) if part.lo else 0
        if last and not shape.word_start:  # a distinctive prefix: 16 more is a token
            lo = min(lo, 16)
        hi = max(part.hi * 4, 256) if last else part.hi * 2 + 8
        nxt = parts[i + 1] if not last else ""
        possessive = last or (isinstance(nxt, str) and nxt[0] not in part.alphabet)
        out.append(f"{_class(part.alphabet)}{{{lo},{hi}}}{'+' if possessive else ''}")
    return "".join(out)


def _start_guard(prefix: str) -> str:
    """After the prefix's first character: what came before it is no letter or digit."""
    first = re.escape(prefix[0])
    allowed = "|".join(f"(?<={e}{first})" for e in _AFTER_ESCAPE)
    return f"(?:(?<![A-Za-z0-9]{first})|{allowed})"


def _by_first_character(branches: list[tuple[str, str]]) -> str:
    """One alternation per first character: the regex engine skips a branch on
    its first literal, so a text position costs one test per first character."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for prefix, rest in branches:
        groups.setdefault(prefix[0], []).append((prefix, rest))
    out = []
    for first, group in groups.items():
        group.sort(key=lambda b: -len(b[0]))  # longest prefix first
        out.append(re.escape(first) + "(?:" + "|".join(rest for _, rest in group) + ")")
    return "|".join(out)


def _branches(cut: bool) -> list[tuple[str, str]]:
    branches = []
    for shape in SHAPES:
        chars = "".join(p.alphabet if isinstance(p, Run) else p for p in shape.parts)
        longest = sum(p.hi if isinstance(p, Run) else len(p) for p in shape.parts)
        for prefix in shape.prefixes:
            guard = _start_guard(prefix) if shape.word_start else ""
            if cut:
                least = max(0, CUT_MIN - len(prefix))
                body = f"{_class(chars)}{{{least},{longest * 4}}}+\\Z"
            else:
                body = _body_regex(shape)
            branches.append((prefix, guard + re.escape(prefix[1:]) + body))
    return branches


TOKEN_SHAPES = re.compile(_by_first_character(_branches(cut=False)))
_CUT_TOKEN = re.compile(_by_first_character(_branches(cut=True)))


def token_spans(text: str) -> list[tuple[int, int]]:
    """Where known token formats (and private key blocks) are in `text`."""
    spans: list[tuple[int, int]] = []
    for run in _RUN.finditer(text):
        spans.extend(m.span() for m in TOKEN_SHAPES.finditer(text, run.start(), run.end()))
    if "-----BEGIN" in text:
        spans.extend(m.span() for m in _PEM.finditer(text))
    return spans


def has_token(text: str) -> bool:
    if "-----BEGIN" in text and _PEM.search(text):
        return True
    return any(TOKEN_SHAPES.search(text, r.start(), r.end()) for r in _RUN.finditer(text))


def cut_token_start(text: str) -> int | None:
    """Where a token cut short by the end of `text` starts, if one does."""
    tail = text[-CUT_WINDOW:]
    other = _NOT_TOKEN_CHAR.search(tail[::-1])
    run_start = len(text) - (other.start() if other else len(tail))
    match = _CUT_TOKEN.search(text, run_start)
    return None if match is None else match.start()
