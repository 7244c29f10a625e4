"""The write-ahead spool: usage records in append-only segment files on local disk, until the database has them.

:meth:`Spool.append` is one ``os.write`` of a JSON line to the current segment (``O_APPEND``, no fsync):
once it returns, the record is in the kernel's page cache and survives the death of the process, even a
SIGKILL (not a power cut or a kernel crash). When the disk refuses the write (ENOSPC, EIO), the line is
kept in a bounded in-memory deque instead, moved back to disk at the next :meth:`Spool.seal`, and the
failure is logged once; nothing raises into the request path.

Segments are named ``<pid>-<random>-<seq>.seg``. A process holds an exclusive ``flock`` on every segment it
still writes or replays, from before the name appears (a segment is created under a ``.tmp`` name, locked,
then renamed) until it is deleted. :meth:`Spool.orphans` hands out only segments nobody holds: those of a
dead process, however it died, including this one before a restart. The lock dies with its holder. The
folder must be on a local file system (``flock`` over NFS is not to be trusted).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from hfasgi.usage.record import UsageRecord

__all__ = ["Segment", "Spool"]

logger = logging.getLogger("hfasgi.usage.spool")

SUFFIX = ".seg"
_TEMP = ".tmp"
_STALE_TEMP = 60.0
"""Seconds after which an unlocked ``.tmp`` file is a leftover of a crash between create and rename."""
_CHUNK = 1 << 20
_MAX_LINE = 8 << 20
_write = os.write
"""The one system call of ``append`` (a module global: one lookup fewer, and the tests can make it fail)."""


@dataclass(slots=True, eq=False)
class Segment:
    """A segment file held under this process's lock, read back in batches from ``offset``."""

    path: Path
    fd: int
    offset: int = 0
    """Bytes already read and written to the store."""
    _buffer: bytes = field(default=b"", init=False, repr=False)
    """What was read ahead of ``offset``, kept for the next batch."""
    _buffer_at: int = field(default=0, init=False, repr=False)
    """The file offset of ``_buffer``'s first byte."""

    def read(self, limit: int) -> tuple[list[UsageRecord], int, bool]:
        """Up to ``limit`` records from ``offset``: ``(records, next_offset, at_end)``. Blocking (use a thread).

        Unreadable lines are skipped with a warning; so is a torn last line (a writer killed mid-line).
        """
        records: list[UsageRecord] = []
        if not self._buffer_at <= self.offset <= self._buffer_at + len(self._buffer):
            self._buffer, self._buffer_at = b"", self.offset
        buffer, start = self._buffer, self.offset - self._buffer_at
        at_end = False
        while len(records) < limit:
            end = buffer.find(b"\n", start)
            if end < 0:
                more = os.pread(self.fd, _CHUNK, self._buffer_at + len(buffer))
                if more:
                    if len(buffer) - start > _MAX_LINE:
                        logger.warning("usage spool: skipped an overlong line in %s", self.path)
                        start = len(buffer)
                    buffer, self._buffer_at, start = buffer[start:] + more, self._buffer_at + start, 0
                    continue
                if start < len(buffer):
                    logger.warning(
                        "usage spool: skipped a torn last line (%d bytes) in %s", len(buffer) - start, self.path
                    )
                    start = len(buffer)
                at_end = True
                break
            if end > start:
                try:
                    records.append(UsageRecord.from_line(buffer[start:end]))
                except ValueError as exc:
                    logger.warning("usage spool: skipped an unreadable line in %s (%s)", self.path, exc)
            start = end + 1
        self._buffer = buffer
        return records, self._buffer_at + start, at_end

    def release(self, *, delete: bool) -> None:
        """Delete the file (when its records are in the store) and drop the lock."""
        try:
            if delete:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
        finally:
            os.close(self.fd)


class Spool:
    """Segment files in ``directory`` (see the module docstring). ``append`` is safe from any thread."""

    def __init__(self, directory: str | os.PathLike[str], *, max_memory: int = 100_000) -> None:
        if max_memory < 1:
            raise ValueError(f"Spool max_memory must be at least 1, got {max_memory}")
        self.directory = Path(directory)
        self.max_memory = max_memory
        self.appended = 0
        """Records appended since :meth:`open` (on disk or in memory)."""
        self.dropped = 0
        """Records lost: the disk refused them and memory was full."""
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._memory: deque[bytes] = deque()
        self._current: Segment | None = None
        self._lines = 0
        self._dirty = False
        self._torn = False
        self._failing = False
        self._open = False
        self._name = ""
        self._seq = 0

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r}, appended={self.appended}, in_memory={len(self._memory)})"

    @property
    def in_memory(self) -> int:
        """Records the disk refused, waiting in memory."""
        return len(self._memory)

    def open(self) -> None:
        """Create the folder (mode 0700) and the first segment."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._lock:
            if self._open:
                raise RuntimeError("the usage spool is already open")
            self._name, self._seq = f"{os.getpid()}-{os.urandom(4).hex()}", 0  # here, not in __init__: after any fork
            self._current = self._create()
            self._open = True

    def append(self, line: bytes) -> int:
        """Append one ``\\n``-terminated line; returns how many lines the current segment holds. Never blocks long."""
        with self._lock:
            if not self._open:
                raise RuntimeError("the usage spool is not open")
            self.appended += 1
            current = self._current
            if current is None:
                self._keep(line, "no segment file could be created")
                return self._lines
            data = b"\n" + line if self._torn else line
            try:
                written = _write(current.fd, data)
            except OSError as exc:
                self._keep(line, f"{type(exc).__name__}: {exc}")
                return self._lines
            self._dirty = True
            if written != len(data):  # a short write (disk full): the line is torn, the record kept in memory
                self._torn = True
                self._keep(line, f"short write ({written} of {len(data)} bytes)")
                return self._lines
            self._wrote()
            return self._lines

    def seal(self) -> Segment | None:
        """Close the current segment to writing and start a new one; ``None`` when there is nothing to seal.

        Lines held in memory are first moved to disk when the disk takes them again.
        """
        with self._lock:
            if self._current is None and self._open:  # the last attempt to create one failed: try again
                try:
                    self._current = self._create()
                except OSError as exc:
                    self._note(f"cannot create a segment: {type(exc).__name__}: {exc}")
            self._respool()
            if not self._dirty:
                return None
            sealed = self._current
            try:
                self._current = self._create()
            except OSError as exc:
                self._current = None  # appends go to memory until a segment can be created again
                self._note(f"cannot create a segment: {type(exc).__name__}: {exc}")
            self._lines, self._dirty, self._torn = 0, False, False
            return sealed

    def take_memory(self) -> list[bytes]:
        """Remove and return the lines held in memory (give them back with :meth:`restore_memory` on failure)."""
        with self._lock:
            lines = list(self._memory)
            self._memory.clear()
            return lines

    def restore_memory(self, lines: list[bytes]) -> None:
        """Put back lines :meth:`take_memory` returned, ahead of newer ones, within the memory bound."""
        with self._lock:
            self._memory.extendleft(reversed(lines))
            while len(self._memory) > self.max_memory:
                self._memory.popleft()
                self.dropped += 1

    def orphans(self, limit: int) -> list[Segment]:
        """Lock and return up to ``limit`` segments no live process holds (a few system calls per file)."""
        found: list[Segment] = []
        try:
            entries = sorted(os.scandir(self.directory), key=lambda e: e.name)
        except FileNotFoundError:
            return found
        for entry in entries:
            if len(found) >= limit:
                break
            if entry.name.endswith(_TEMP):
                self._remove_stale(Path(entry.path))
                continue
            if not entry.name.endswith(SUFFIX):
                continue
            segment = _try_lock(Path(entry.path))
            if segment is not None:
                found.append(segment)
        return found

    def close(self) -> None:
        """Stop appending: memory goes to disk if it can, an empty current segment is deleted, locks drop."""
        with self._lock:
            self._respool()
            if self._memory:
                logger.error(
                    "usage spool: %d usage records are lost: %s refuses writes (%s)",
                    len(self._memory),
                    self.directory,
                    self.last_error,
                )
                self.dropped += len(self._memory)
                self._memory.clear()
            current, self._current = self._current, None
            self._open = False
            if current is not None:
                current.release(delete=not self._dirty)
            self._lines, self._dirty, self._torn = 0, False, False

    def _create(self) -> Segment:
        """A new locked segment: created under a temporary name, locked, then renamed (never seen unlocked)."""
        self._seq += 1
        name = f"{self._name}-{self._seq:08d}"
        temp, path = self.directory / (name + _TEMP), self.directory / (name + SUFFIX)
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(temp, flags, 0o600)
        except FileNotFoundError:  # someone removed the folder: make it again
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(temp, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(temp, path)
        except BaseException:
            os.close(fd)
            raise
        return Segment(path, fd)

    def _respool(self) -> None:
        current = self._current
        while self._memory and current is not None:
            line = self._memory[0]
            data = b"\n" + line if self._torn else line
            try:
                written = _write(current.fd, data)
            except OSError:
                return
            self._dirty = True
            if written != len(data):
                self._torn = True
                return
            self._wrote()
            self._memory.popleft()

    def _wrote(self) -> None:
        self._torn = False
        self._lines += 1
        if self._failing:
            self._failing = False
            logger.warning("usage spool: %s accepts writes again", self.directory)

    def _keep(self, line: bytes, reason: str) -> None:
        if len(self._memory) >= self.max_memory:
            self._memory.popleft()
            self.dropped += 1
            if self.dropped == 1:
                logger.error("usage spool: memory is full (%d records): the oldest are dropped", self.max_memory)
        self._memory.append(line)
        self._note(reason)

    def _note(self, reason: str) -> None:
        self.last_error = reason
        if not self._failing:
            self._failing = True
            logger.error("usage spool: %s refuses writes (%s): records are kept in memory", self.directory, reason)

    @staticmethod
    def _remove_stale(path: Path) -> None:
        try:
            if time.time() - path.stat().st_mtime < _STALE_TEMP:
                return
        except FileNotFoundError:
            return
        segment = _try_lock(path)
        if segment is not None:
            segment.release(delete=True)


def _try_lock(path: Path) -> Segment | None:
    """``path`` opened and locked, or ``None`` when another process holds it or it is gone."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_nlink == 0:  # its replayer deleted it between our open and our lock
            os.close(fd)
            return None
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return Segment(path, fd)
