"""Terminal-safe text: what the agent sent never drives the terminal it is shown on.

Every character Python's `str.isprintable` refuses is escaped: C0 and C1 controls
(escape sequences: ESC, CSI U+009B), DEL, bidi controls that reorder what is
shown (U+202E, U+2066..U+2069, U+200E/F, U+061C), other invisible formatting
(zero-width characters, U+2028/9, tag characters), non-ASCII spaces, lone
surrogates (not text at all) and unassigned code points. Plain lines show them
as \\xNN, \\uNNNN or \\UNNNNNNNN; JSON shows them as \\uNNNN escapes, so it
still parses to the same values.
"""

import json
import re

# A cheap superset of what may need escaping: all but printable ASCII.
_SUSPECT = re.compile(r"[^\x20-\x7e]")


def _escaped(m: re.Match[str]) -> str:
    c = m.group(0)
    if c.isprintable():
        return c
    n = ord(c)
    return f"\\x{n:02x}" if n <= 0xFF else f"\\u{n:04x}" if n <= 0xFFFF else f"\\U{n:08x}"


def printable(value: object) -> str:
    """`value` as one terminal-safe line: every unprintable character escaped."""
    text = str(value)
    return text if text.isprintable() else _SUSPECT.sub(_escaped, text)


def _json_escaped(m: re.Match[str]) -> str:
    c = m.group(0)
    if c == "\n" or c.isprintable():  # a raw newline in JSON text is indentation
        return c
    n = ord(c)
    if n > 0xFFFF:  # JSON spells these as a surrogate pair
        n -= 0x10000
        return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"
    return f"\\u{n:04x}"


def printable_json_text(text: str) -> str:
    """JSON text made terminal-safe. Unprintable characters can only stand inside
    strings (json.dumps puts nothing else between tokens but newlines and spaces),
    where the escape means the same character: the values parse back unchanged."""
    return text if text.isprintable() else _SUSPECT.sub(_json_escaped, text)


def printable_json(value: object, indent: int | None = None) -> str:
    """`value` as terminal-safe JSON: readable text, the same values when parsed."""
    return printable_json_text(json.dumps(value, ensure_ascii=False, indent=indent))


def summary(exchange: dict) -> str:
    """One line per exchange, as `ls` prints it."""
    if exchange.get("event") == "tls_failed":
        outcome, method, where = "TLS-FAIL", "-", f"{exchange.get('domain')}"
    elif exchange.get("event") == "tcp":
        outcome, method, where = _relay(exchange)
    else:
        method = str(exchange.get("method", "?"))
        where = f"{exchange.get('scheme')}://{exchange.get('domain')}:{exchange.get('port')}"
        where += str(exchange.get("path", ""))
        if "blocked" in exchange:
            outcome = "BLOCKED"
        elif "error" in exchange:
            outcome = "ERROR"
        elif "response" in exchange:
            outcome = str(exchange["response"].get("status"))
        else:
            outcome = "..."
    return printable(
        f"{exchange.get('timestamp', '')}  {exchange.get('id')}  {outcome:>8}  {method:<7} {where}"
    )


def event_line(event: dict) -> str:
    """One line per event, as `tail` prints it."""
    kind = event.get("event")
    head = f"{event.get('timestamp', '')}  {event.get('id')}  {str(kind):<10}"
    if kind == "request":
        line = (
            f"{head} {event.get('method')} {event.get('scheme')}://{event.get('domain')}"
            f":{event.get('port')}{event.get('path')}"
        )
    elif kind == "response":
        line = f"{head} {event.get('status')} {event.get('response_bytes')} bytes"
    elif kind == "tcp":
        line = f"{head} tcp://{event.get('domain')}:{event.get('port')} {event.get('decision')}"
    elif kind == "tcp_end":
        line = (
            f"{head} {event.get('ended')} {event.get('bytes_from_client')} B out,"
            f" {event.get('bytes_from_server')} B in"
        )
    elif kind == "connection":
        line = (
            f"{head} {event.get('action')} {event.get('client')}: {event.get('count')}"
            f" (limit {event.get('limit')})"
        )
    else:
        detail = event.get("error") or event.get("reason") or event.get("action") or ""
        line = f"{head} {detail}"
    return printable(line)


def _relay(exchange: dict) -> tuple[str, str, str]:
    """A raw TCP relay's outcome, "method" and target, with the bytes each way once closed."""
    where = f"tcp://{exchange.get('domain')}:{exchange.get('port')}"
    end = exchange.get("tcp_end")
    if "blocked" in exchange:
        return "BLOCKED", "TCP", where
    if end is None:
        return "...", "TCP", where
    where += f"  {end.get('bytes_from_client')} B out, {end.get('bytes_from_server')} B in"
    where += f" ({end.get('error') or end.get('ended')})"
    return ("ERROR" if end.get("error") else "CLOSED"), "TCP", where
