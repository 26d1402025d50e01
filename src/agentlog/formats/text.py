"""Terminal lines of agent-controlled text: never let it drive the terminal."""

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(value: object) -> str:
    """Control characters (escape sequences included) shown as \\xNN."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", str(value))


def summary(exchange: dict) -> str:
    """One line per exchange, as `ls` prints it."""
    if exchange.get("event") == "tls_failed":
        outcome, method, where = "TLS-FAIL", "-", f"{exchange.get('domain')}"
    elif exchange.get("event") == "tcp":
        outcome, method, where = _relay(exchange)
    else:
        method = exchange.get("method", "?")
        where = f"{exchange.get('scheme')}://{exchange.get('domain')}:{exchange.get('port')}"
        where += exchange.get("path", "")
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
