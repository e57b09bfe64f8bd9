"""One worker per state folder: an advisory file lock that names its holder."""

from __future__ import annotations

import fcntl
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

from ..core.errors import AlreadyRunning, StateError


class StateLock:
    """Held for the worker's life; the kernel releases it if the process dies, even by kill -9."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "worker.lock"
        self._fd: int | None = None
        self.identity: tuple[int, int] = (0, 0)  # device and inode of the file we lock

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateError(
                f"the state folder cannot be used: {exc.filename or self.path}: {exc.strerror}; "
                "give the service's user write access to paths.state, or free some space"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 300, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise AlreadyRunning(
                f"another worker already serves {self.path.parent} ({holder}); stop it first, "
                "or give this one its own paths.state"
            ) from None
        started = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(
                fd, f"pid {os.getpid()} on {socket.gethostname()}, since {started}\n".encode(), 0
            )
        except OSError as exc:
            os.close(fd)
            raise StateError(
                f"the lock file {self.path} cannot be written: {exc.strerror}"
            ) from None
        self._fd = fd
        stat = os.fstat(fd)
        self.identity = (stat.st_dev, stat.st_ino)

    def lost(self) -> str | None:
        """Why the lock no longer protects the state folder, if it does not: the file was
        removed or replaced, so another worker could take a new one beside us."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return f"{self.path} was removed"
        except OSError as exc:
            return f"{self.path}: {exc.strerror}"
        if (stat.st_dev, stat.st_ino) != self.identity:
            return f"{self.path} was replaced by another file"
        return None

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None
