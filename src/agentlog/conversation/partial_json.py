"""JSON that may be cut short: the value its text holds so far (pure).

A body stored up to the body cap, or a tool's input whose stream ended early, is a
prefix of a JSON document. `parse_prefix` reads what is there: open strings, arrays
and objects are closed where the text stops; a key without its value, a number or
literal cut in two, are left out. Whole JSON reads as `json.loads` reads it; text
that is not a prefix of any JSON document reads as nothing.
"""

import json
import json.decoder
import math
import re
from collections.abc import Callable, Iterable
from typing import Final

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_STRING_RUN = re.compile(r'[^"\\\x00-\x1f]*')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_LITERALS = {"true": True, "false": False, "null": None}
# json's own string scanner (C), for the strings that end: most of them.
_scanstring: Callable[[str, int, bool], tuple[str, int]] = json.decoder.__dict__["scanstring"]
# Deeper documents read as nothing: what reads, copies or writes them again would
# run out of stack (real ones nest a dozen levels).
MAX_DEPTH: Final = 100


class _Missing:
    pass


_MISSING: Final = _Missing()


class _Ended(Exception):
    """The text stopped; `value` is what the innermost open value held (or _MISSING)."""

    def __init__(self, value: object) -> None:
        self.value = value


class _Bad(Exception):
    """Not a prefix of JSON."""


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def parse_prefix(text: str) -> tuple[object, bool]:
    """(value, complete): `complete` is True when `text` is one whole JSON document.
    For a cut document the value is what was read (None when nothing was). Strict
    JSON only: NaN, Infinity and numbers out of a float's range are not read, so
    what comes out can be written as JSON again."""
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError):
        pass
    else:
        return (value, True) if _shallow(value) else (None, False)
    try:
        _value(text, _skip(text, 0), 0)
    except _Ended as ended:
        return (None if ended.value is _MISSING else ended.value), False
    except (_Bad, RecursionError):
        return None, False
    # A whole value that json.loads refused: trailing text, or NaN-like numbers.
    return None, False


def _shallow(value: object) -> bool:
    """Whether `value` nests at most MAX_DEPTH arrays and objects deep."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[object] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth >= MAX_DEPTH:
            return False
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def _skip(text: str, i: int) -> int:
    match = _WS.match(text, i)
    return match.end() if match else i


def _value(text: str, i: int, depth: int) -> tuple[object, int]:
    if i >= len(text):
        raise _Ended(_MISSING)
    c = text[i]
    if c in "{[" and depth >= MAX_DEPTH:
        raise _Bad
    if c == "{":
        return _object(text, i + 1, depth + 1)
    if c == "[":
        return _array(text, i + 1, depth + 1)
    if c == '"':
        return _string(text, i + 1)
    if c == "-" or c.isdigit():
        return _number(text, i)
    for word, value in _LITERALS.items():
        if text.startswith(word, i):
            return value, i + len(word)
        if word.startswith(text[i:]):
            raise _Ended(_MISSING)
    raise _Bad


def _number(text: str, i: int) -> tuple[object, int]:
    match = _NUMBER.match(text, i)
    end = match.end() if match else i
    if end == len(text) or (match is None and text[i:] == "-"):
        # Cut inside the number, perhaps: "12" may have been "123".
        raise _Ended(_MISSING)
    if match is None:
        raise _Bad
    number = match.group()
    if not any(c in number for c in ".eE"):
        return int(number), end
    try:
        return _finite(number), end
    except ValueError:
        raise _Bad from None


def _string(text: str, i: int) -> tuple[str, int]:
    try:
        return _scanstring(text, i, True)
    except json.JSONDecodeError:
        pass
    # Unterminated (or bad): read it by hand to the end of the text.
    parts: list[str] = []
    while True:
        run = _STRING_RUN.match(text, i)
        assert run is not None  # the pattern matches the empty string
        parts.append(run.group())
        i = run.end()
        if i >= len(text):
            raise _Ended("".join(parts))
        c = text[i]
        if c == '"':
            return "".join(parts), i + 1
        if c != "\\":
            raise _Bad  # a control character
        if i + 1 >= len(text):
            raise _Ended("".join(parts))
        escape = text[i + 1]
        if escape in _ESCAPES:
            parts.append(_ESCAPES[escape])
            i += 2
        elif escape == "u":
            unit = _unit(text, i + 2, parts)
            i += 6
            if 0xD800 <= unit < 0xDC00 and text.startswith("\\u", i):
                low = _unit(text, i + 2, parts)
                if 0xDC00 <= low < 0xE000:  # a pair: one character, as json.loads reads it
                    unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
                else:
                    parts.append(chr(unit))
                    unit = low
                    i += 6
            elif 0xD800 <= unit < 0xDC00 and "\\u".startswith(text[i : i + 2]):
                raise _Ended("".join(parts))  # its low half may have been cut off
            parts.append(chr(unit))
        else:
            raise _Bad


def _unit(text: str, i: int, parts: list[str]) -> int:
    """The code unit of the 4 hex digits at `i` (_Ended when they were cut)."""
    digits = text[i : i + 4]
    if not all(d in "0123456789abcdefABCDEF" for d in digits):
        raise _Bad
    if len(digits) < 4:
        raise _Ended("".join(parts))
    return int(digits, 16)


def _array(text: str, i: int, depth: int) -> tuple[list[object], int]:
    items: list[object] = []
    i = _skip(text, i)
    if text.startswith("]", i):
        return items, i + 1
    while True:
        try:
            item, i = _value(text, i, depth)
        except _Ended as ended:
            if ended.value is not _MISSING:
                items.append(ended.value)
            raise _Ended(items) from None
        items.append(item)
        i = _skip(text, i)
        if i >= len(text):
            raise _Ended(items)
        if text[i] == "]":
            return items, i + 1
        if text[i] != ",":
            raise _Bad
        i = _skip(text, i + 1)


def _object(text: str, i: int, depth: int) -> tuple[dict[str, object], int]:
    items: dict[str, object] = {}
    i = _skip(text, i)
    if text.startswith("}", i):
        return items, i + 1
    while True:
        if i >= len(text):
            raise _Ended(items)
        if text[i] != '"':
            raise _Bad
        try:
            key, i = _string(text, i + 1)
        except _Ended:
            raise _Ended(items) from None
        i = _skip(text, i)
        if i >= len(text):
            raise _Ended(items)
        if text[i] != ":":
            raise _Bad
        try:
            items[key], i = _value(text, _skip(text, i + 1), depth)
        except _Ended as ended:
            if ended.value is not _MISSING:
                items[key] = ended.value
            raise _Ended(items) from None
        i = _skip(text, i)
        if i >= len(text):
            raise _Ended(items)
        if text[i] == "}":
            return items, i + 1
        if text[i] != ",":
            raise _Bad
        i = _skip(text, i + 1)
