"""RFC 3339 UTC timestamps with microseconds, as the journal writes them."""

import functools
import time


@functools.lru_cache(maxsize=4)  # called for every event; the second rarely changes
def _second(whole: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))


def rfc3339(ts: float) -> str:
    whole = int(ts)
    return f"{_second(whole)}.{int((ts - whole) * 1_000_000):06d}Z"
