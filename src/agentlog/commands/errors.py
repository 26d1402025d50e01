"""How a command fails: one line on stderr and an exit status (cli.main prints it)."""

from pathlib import Path

from agentlog.logsdir import LogsDir


class CommandError(Exception):
    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def existing_journal(logs: LogsDir) -> Path:
    if not logs.journal.exists():
        raise CommandError(f"no journal at {logs.journal}")
    return logs.journal
