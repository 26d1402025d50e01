"""Shared test data: realistic traffic and the spellings attacks use."""

import json

from hypothesis import strategies as st

# -- an ordinary Anthropic Messages exchange: redaction must leave it alone ------

CODE = """def login(user, password):
    token = make_token(user)
    headers = {"Authorization": f"Bearer {token}"}
    api_key = os.environ["API_KEY"]
    payload = {"password": password, "max_tokens": 4096}
    return requests.post(f"{BASE}/login?next=/home", json=payload, headers=headers)
"""

ANTHROPIC_REQUEST = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 32000,
    "stream": True,
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "metadata": {"user_id": "user_3f2e_account_9a1b_session_77c4"},
    "system": [
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}
    ],
    "tools": [
        {
            "name": "Bash",
            "description": "Run a command. Never print tokens or passwords.",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
        }
    ],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Why does this fail?\n" + CODE}]},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "name": "Bash",
                    "input": {"command": "grep -rn token_count src/ | head"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
                    "content": "src/a.py:3: token_count = count(tokens)",
                }
            ],
        },
    ],
}
ANTHROPIC_RESPONSE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "The password check runs before the token refresh."}],
    "stop_reason": "end_turn",
    "usage": {
        "input_tokens": 2095,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 31000,
        "output_tokens": 503,
    },
}
_TEXT_DELTA = {"type": "text_delta", "text": "token = tokenizer(text)"}
_JSON_DELTA = {"type": "input_json_delta", "partial_json": '{"command": "export TOKEN_LIMIT=4096'}
ANTHROPIC_SSE = "".join(
    f"event: {data['type']}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
    for data in [
        {"type": "message_start", "message": {**ANTHROPIC_RESPONSE, "content": []}},
        {"type": "content_block_delta", "index": 0, "delta": _TEXT_DELTA},
        {"type": "content_block_delta", "index": 1, "delta": _JSON_DELTA},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 1},
        },
    ]
)


# -- every spelling of 127.0.0.1 --------------------------------------------------

LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "2130706433",
    "0x7f000001",
    "0X7F000001",
    "127.1",
    "127.0.1",
    "0177.0.0.1",
    "0177.1",
    "127.000.000.001",
    "0x7f.0.0.1",
    "0x7f.1",
    "000000127.0.0.1",  # 0127 octal is 87: leading zeros are octal...
    "127.0.0.1.",
    "127.0.0.%31",
    "%31%32%37.0.0.1",
    "１２７.０.０.１",  # full-width digits (UTS #46 maps them)
    "127。0。0。1",  # ideographic full stop
    "127．0．0．1",
    "::ffff:127.0.0.1",
    "[::ffff:127.0.0.1]",
    "::ffff:7f00:1",
    "[0:0:0:0:0:ffff:7f00:0001]",
    "::FFFF:7F00:1",
    "::127.0.0.1",  # IPv4-compatible
    "[::7f00:1]",
]


def _part(value: int, style: str, zeros: int) -> str:
    if style == "hex":
        return "0x" + "0" * zeros + format(value, "x")
    if style == "HEX":
        return "0X" + "0" * zeros + format(value, "X")
    if style == "oct":
        return "0" + "0" * zeros + format(value, "o")
    return str(value)


@st.composite
def ipv4_spellings(draw) -> tuple[int, str]:
    """An address and one of its inet_aton spellings (1-4 parts, any bases)."""
    number = draw(st.integers(0, 2**32 - 1))
    parts = draw(st.integers(1, 4))
    octets = number.to_bytes(4, "big")
    values = list(octets[: parts - 1]) + [int.from_bytes(octets[parts - 1 :], "big")]
    styles = st.sampled_from(["dec", "hex", "HEX", "oct"])
    spelled = [_part(v, draw(styles), draw(st.integers(0, 3))) for v in values]
    return number, ".".join(spelled) + draw(st.sampled_from(["", "."]))


# -- what must never reach a terminal raw ------------------------------------------

DANGEROUS = {
    *range(0x00, 0x0A),
    *range(0x0B, 0x20),  # C0 but the newline that ends a line
    *range(0x7F, 0xA0),  # DEL, C1
    0x061C,
    0x200B,
    0x200E,
    0x200F,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    0x2028,
    0x2029,
    0xFEFF,
    *range(0xD800, 0xE000),  # lone surrogates
    *range(0xE0000, 0xE0080),  # tags
}


def assert_terminal_safe(output: str) -> None:
    bad = sorted({f"U+{ord(c):04X}" for c in output if ord(c) in DANGEROUS})
    assert not bad, f"raw {bad} reach the terminal"
