"""multipart/form-data bodies, part by part (pure).

A part named like a credential is masked whole; any other part is redacted as
a body of its own content type (a JSON part, a `.env` file upload). The last
part may be cut short by the cap: it runs to the end of the text.
"""

import re
from collections.abc import Callable

from agentlog.redaction.names import is_secret_name

_BOUNDARY = re.compile(r'boundary=(?:"([^"]{1,200})"|([^;,\s]{1,200}))', re.IGNORECASE)
# No content type (or no boundary in it): a first line "--boundary" followed by
# a part's headers is enough.
_SNIFF = re.compile(r"--([!-~]{1,200})\r?\n(?i:content-)")
_NAME = re.compile(r'\bname="([^"]*)"|\bname=([^;\s]+)', re.IGNORECASE)
_PART_TYPE = re.compile(r"^content-type:[ \t]*(.+?)[ \t]*$", re.IGNORECASE | re.MULTILINE)
_HEAD_END = re.compile(r"\r?\n\r?\n")


def boundary(text: str, content_type: str) -> str | None:
    if "multipart/" in content_type.lower() and (m := _BOUNDARY.search(content_type)):
        return m.group(1) or m.group(2)
    if text.startswith("--") and (m := _SNIFF.match(text)):
        return m.group(1)
    return None


def redact(
    text: str,
    boundary: str,
    mask_part: Callable[[str], str],
    redact_part: Callable[[str, str], str],
) -> str:
    """Rebuild `text` with each part's content replaced: by `mask_part(content)`
    under a credential name, else by `redact_part(content, its content type)`."""
    delimiter = "--" + boundary
    pieces = text.split(delimiter)
    out = [pieces[0]]  # the preamble
    for piece in pieces[1:]:
        out.append(delimiter + _part(piece, mask_part, redact_part))
    return "".join(out)


def _part(piece: str, mask_part, redact_part) -> str:
    """One piece after a delimiter: CRLF, headers, blank line, content, CRLF."""
    if piece.startswith("--"):  # the closing delimiter, then the epilogue
        return piece
    head_end = _HEAD_END.search(piece)
    if head_end is None:  # cut inside the part's headers: nothing of its content yet
        return piece
    head, rest = piece[: head_end.end()], piece[head_end.end() :]
    content, newline = rest, ""
    for ending in ("\r\n", "\n"):
        if rest.endswith(ending):  # the line break belongs to the next delimiter
            content, newline = rest[: -len(ending)], ending
            break
    name_match = _NAME.search(head)
    name = (name_match.group(1) or name_match.group(2)) if name_match else ""
    if content and is_secret_name(name):
        clean = mask_part(content)
    else:
        type_match = _PART_TYPE.search(head)
        clean = redact_part(content, type_match.group(1) if type_match else "")
    return head + clean + newline
