"""Time-ordered, sortable ids: 48-bit milliseconds and 80 random bits, 26 characters.

Crockford's base32 alphabet, in the order of its values, so ids sort by time.
"""

import base64
import os
import time

_TO_CROCKFORD = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)


def new_id(now: float | None = None) -> str:
    ms = int((time.time() if now is None else now) * 1000)
    raw = ((ms << 80) | int.from_bytes(os.urandom(10))).to_bytes(16)
    return base64.b32encode(raw)[:26].translate(_TO_CROCKFORD).decode()
