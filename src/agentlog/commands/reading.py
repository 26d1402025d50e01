"""What the read commands share: the journal's exchanges, and one warning line
for the lines skipped as malformed (a reader goes on past them)."""

import sys
from pathlib import Path

from agentlog.formats.text import printable
from agentlog.journal.reader import events, exchanges
from agentlog.logsdir import LogsDir


class SkippedLines:
    """Counts the journal lines skipped (`events`' callback); `warn` says so once."""

    def __init__(self, journal: Path) -> None:
        self.journal = journal
        self.count = 0
        self.first: tuple[int, str] | None = None

    def __call__(self, number: int, why: str) -> None:
        self.count += 1
        if self.first is None:
            self.first = (number, why)

    def warn(self) -> None:
        if self.first is None:
            return
        number, why = self.first
        message = (
            f"agentlog: warning: skipped {self.count} malformed line(s) of {self.journal},"
            f" the first at line {number}: {why} (agentlog verify checks the journal)"
        )
        print(printable(message), file=sys.stderr)


def read_exchanges(logs: LogsDir) -> dict[str, dict]:
    """id -> exchange, from the well-formed events of the journal."""
    journal = logs.existing_journal()
    skipped = SkippedLines(journal)
    merged = exchanges(events(journal, skipped))
    skipped.warn()
    return merged
