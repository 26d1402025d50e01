"""What the user did wrong, as opposed to what the program did wrong.

Every error a user can fix (a bad flag value, a missing journal, a port in
use) derives from UserError. `cli.main` catches it once and prints one line
with its exit status; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """One line for the user, and the exit status the command ends with."""

    status = 2

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class ConfigError(UserError):
    """An option value that does not parse or makes no sense."""


class NotFound(UserError):
    """The thing asked for is not in the records (exit 1, like grep)."""

    status = 1


class StartupError(UserError):
    """A service could not start (a port taken, capture refused); the message says why."""
