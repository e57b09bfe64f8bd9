"""Only regular files are read: opening a named pipe waits for a writer, forever."""

from __future__ import annotations

import stat
from pathlib import Path


def not_regular(path: Path) -> str | None:
    """Why `path` cannot be read as a file (a FIFO, a device, a socket, a folder), or None.

    `stat` does not open the file, so it answers where an `open` would wait. A path
    that does not exist is None here: the read that follows says so in its own words.
    """
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    kind = (
        "a named pipe (FIFO)"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a folder"
        if stat.S_ISDIR(mode)
        else "not a regular file"
    )
    return (
        f"is {kind}, not a regular file: put the file itself there (reading this "
        "could wait forever)"
    )
