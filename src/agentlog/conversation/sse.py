"""Server-Sent Events, parsed incrementally as the WHATWG spec says (pure).

Bytes may arrive split anywhere (inside a UTF-8 character, between CR and LF): the
events are the same. Lines end in CRLF, LF or CR; a blank line dispatches the event;
a line starting with ":" is a comment; an event still open when the stream ends is
not dispatched (the spec's rule), and `finish` says one was left open.
"""

import codecs
import re
from collections.abc import Iterable
from dataclasses import dataclass

_LINE_END = re.compile(r"[\r\n]")


@dataclass(frozen=True)
class SseEvent:
    event: str  # "message" when the stream named none
    data: str
    id: str | None = None


class SseParser:
    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending = ""  # a line not ended yet
        self._skip_lf = False  # the last text ended in CR: a LF next belongs to it
        self._started = False  # a leading BOM is dropped once
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None
        self._open = False  # a field line was read since the last dispatch

    def feed(self, chunk: bytes) -> list[SseEvent]:
        return self._text(self._decoder.decode(chunk))

    def finish(self) -> tuple[list[SseEvent], bool]:
        """The events the rest of the input completes, and whether the stream ended
        inside an event (a partial line, or lines without their blank line)."""
        events = self._text(self._decoder.decode(b"", final=True))
        return events, bool(self._pending) or self._open

    def _text(self, text: str) -> list[SseEvent]:
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._skip_lf and text:
            self._skip_lf = False
            text = text.removeprefix("\n")
        buffer = self._pending + text
        events: list[SseEvent] = []
        start = 0
        while (found := _LINE_END.search(buffer, start)) is not None:
            end = found.start()
            line = buffer[start:end]
            if buffer[end] == "\r":
                if end + 1 == len(buffer):
                    self._skip_lf = True
                elif buffer[end + 1] == "\n":
                    end += 1
            start = end + 1
            event = self._line(line)
            if event is not None:
                events.append(event)
        self._pending = buffer[start:]
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        self._open = True
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._last_id = value
        return None

    def _dispatch(self) -> SseEvent | None:
        self._open = False
        if not self._data:
            self._event = ""
            return None
        event = SseEvent(self._event or "message", "\n".join(self._data), self._last_id)
        self._event, self._data = "", []
        return event


def parse_all(chunks: Iterable[bytes]) -> tuple[list[SseEvent], bool]:
    """Every event of a stream, and whether it ended inside one."""
    parser = SseParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    rest, open_ = parser.finish()
    return events + rest, open_
