"""Files the gateway rewrites while others read them (key files, the model catalog): lock, then replace atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["locked", "replace_atomically"]


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside ``path`` (``<path>.lock``), so two writers never lose each other's edit.

    Raises ``OSError`` when the lock file cannot be opened. Without ``fcntl`` (not POSIX) there is no
    lock: the atomic rename alone protects the file.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path.parent / (path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def replace_atomically(target: Path, text: str, mode: int | None = None) -> None:
    """Write ``text`` to a temporary file beside ``target``, flush it to disk, then rename it over ``target``.

    Readers see the old file or the new one, never half of one. ``mode`` sets the new file's permissions.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
