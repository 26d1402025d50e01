"""Reading files the records point at, which whoever can write the logs directory
may have swapped: only regular files, never through a planted symlink, bounded.

A symlink in bodies/ could make `show --bodies` print (and `export --har` ship)
any file the reader may read; a FIFO or a device would hang it or feed it
forever. Such a file is refused with one line, never followed.
"""

import os
import stat
from pathlib import Path

from agentlog.errors import UserError


class UnsafeFile(UserError):
    """A file in the logs directory is not what the proxy writes there."""


def open_regular(path: Path, *, follow_symlinks: bool = False) -> int:
    """A read-only descriptor of `path`, which must be a regular file; UnsafeFile if
    it is a symlink (unless `follow_symlinks`), a FIFO, a device or a directory.
    FileNotFoundError (and other OSErrors) as `open` raises them."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK  # a FIFO must not block the open
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if not follow_symlinks and path.is_symlink():  # O_NOFOLLOW: ELOOP
            raise UnsafeFile(f"{path} is a symlink; refusing to follow it") from e
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise UnsafeFile(f"{path} is not a regular file; refusing to read it")
    os.set_blocking(fd, True)
    return fd


def read_regular(path: Path, limit: int) -> bytes:
    """The whole of regular file `path` (no symlink), at most `limit` bytes; UnsafeFile
    if it is larger."""
    with os.fdopen(open_regular(path), "rb") as f:
        if os.fstat(f.fileno()).st_size <= limit:  # asked first: a huge file costs nothing
            data = f.read(limit + 1)  # and bounded: it may be growing
            if len(data) <= limit:
                return data
    raise UnsafeFile(f"{path} is larger than {limit} bytes; refusing to read it")
