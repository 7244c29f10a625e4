"""The spool: append, seal, read back in batches, orphans only when nobody holds them, torn lines, full disks.

The flock tests use a second process (tests/usage/ledger_child.py ``spool``) and a second spool in this
process: both must see a live writer's segments as taken, and a dead one's as free.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hfasgi.usage import UsageRecord
from hfasgi.usage import spool as spool_module
from hfasgi.usage.spool import Segment, Spool
from tests.usage.ledger_support import Child, record, segments


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    opened = Spool(tmp_path / "spool")
    opened.open()
    yield opened
    opened.close()


def read_all(segment: Segment, batch: int = 1000) -> list[UsageRecord]:
    found: list[UsageRecord] = []
    while True:
        records, segment.offset, at_end = segment.read(batch)
        found += records
        if at_end:
            return found


def test_append_seal_and_read_back_in_batches(spool: Spool) -> None:
    for n in range(10):
        assert spool.append(record(n).to_line()) == n + 1
    sealed = spool.seal()
    assert sealed is not None and sealed.path.exists()
    batches = []
    while True:
        records, sealed.offset, at_end = sealed.read(4)
        batches.append([r.request_id for r in records])
        if at_end:
            break
    assert batches[:3] == [["r-0", "r-1", "r-2", "r-3"], ["r-4", "r-5", "r-6", "r-7"], ["r-8", "r-9"]]
    assert all(not b for b in batches[3:])
    sealed.release(delete=True)
    assert not sealed.path.exists()
    assert spool.appended == 10
    assert spool.seal() is None  # the new segment is empty: nothing to seal
    assert len(segments(spool.directory)) == 1


def test_close_deletes_an_empty_segment_and_keeps_one_with_records(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    empty = Spool(directory)
    empty.open()
    empty.close()
    assert segments(directory) == []
    full = Spool(directory)
    full.open()
    full.append(record(1).to_line())
    full.close()
    assert len(segments(directory)) == 1
    with pytest.raises(RuntimeError, match="not open"):
        full.append(record(2).to_line())


def test_a_second_spool_does_not_take_segments_someone_holds(spool: Spool, tmp_path: Path) -> None:
    spool.append(record(1).to_line())
    sealed = spool.seal()
    assert sealed is not None
    other = Spool(spool.directory)
    assert other.orphans(10) == []  # the current and the sealed segment are both locked by ``spool``
    sealed.release(delete=False)  # as if this process had died with it
    [orphan] = other.orphans(10)
    assert orphan.path == sealed.path and [r.request_id for r in read_all(orphan)] == ["r-1"]
    assert other.orphans(10) == []  # now ``other`` holds it
    orphan.release(delete=True)


def test_flock_excludes_another_process_until_it_dies(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    with Child("spool", "-", "-", str(directory), "c", "25") as child:
        child.wait_for(lambda c: bool(c.seen("READY")), "READY")
        assert len(segments(directory)) == 1
        assert Spool(directory).orphans(10) == []
        child.kill()
    [orphan] = Spool(directory).orphans(10)
    assert [r.request_id for r in read_all(orphan)] == [f"c-{n}" for n in range(25)]
    orphan.release(delete=True)


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "spool"
    directory.mkdir()
    whole = b"".join(record(n).to_line() for n in range(3))
    (directory / "1-dead-00000001.seg").write_bytes(whole + record(3).to_line()[:40])
    [orphan] = Spool(directory).orphans(10)
    with caplog.at_level(logging.WARNING, "hfasgi.usage.spool"):
        assert [r.request_id for r in read_all(orphan, batch=2)] == ["r-0", "r-1", "r-2"]
    assert "torn last line" in caplog.text
    orphan.release(delete=True)


def test_an_unreadable_line_is_skipped_and_the_rest_is_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "spool"
    directory.mkdir()
    lines = [record(0).to_line(), b'{"request_id": "half"\n', b"\n", record(1).to_line()]
    (directory / "1-dead-00000001.seg").write_bytes(b"".join(lines))
    [orphan] = Spool(directory).orphans(10)
    with caplog.at_level(logging.WARNING, "hfasgi.usage.spool"):
        assert [r.request_id for r in read_all(orphan)] == ["r-0", "r-1"]
    assert "unreadable line" in caplog.text
    orphan.release(delete=True)


def test_a_long_segment_reads_across_chunks(spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_module, "_CHUNK", 97)  # lines straddle every read
    for n in range(200):
        spool.append(record(n).to_line())
    sealed = spool.seal()
    assert sealed is not None
    assert [r.request_id for r in read_all(sealed, batch=7)] == [f"r-{n}" for n in range(200)]
    sealed.release(delete=True)


def test_a_full_disk_keeps_records_in_memory_and_logs_once(spool: Spool, caplog: pytest.LogCaptureFixture) -> None:
    current = spool._current
    assert current is not None
    saved = os.dup(current.fd)  # keeps the segment (and its lock) while its descriptor points at /dev/full
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        spool.append(record(0).to_line())
        os.dup2(full, current.fd)
        with caplog.at_level(logging.ERROR, "hfasgi.usage.spool"):
            for n in range(1, 6):
                spool.append(record(n).to_line())  # ENOSPC from the kernel: never raised
        logged = [r.getMessage() for r in caplog.records if r.name == "hfasgi.usage.spool"]
        assert len(logged) == 1 and "refuses writes" in logged[0], logged
        assert "No space left" in (spool.last_error or "")
        assert spool.in_memory == 5 and spool.appended == 6
        os.dup2(saved, current.fd)  # the disk has room again
        sealed = spool.seal()  # moves memory to disk first
    finally:
        os.close(saved)
        os.close(full)
    assert sealed is not None and spool.in_memory == 0
    assert sorted(r.request_id for r in read_all(sealed)) == sorted(f"r-{n}" for n in range(6))
    sealed.release(delete=True)


def test_a_short_write_is_mended_by_a_newline_and_the_record_kept(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = spool_module._write
    spool.append(record(0).to_line())
    monkeypatch.setattr(spool_module, "_write", lambda fd, data: real(fd, data[:30]))
    spool.append(record(1).to_line())  # 30 bytes land, the rest does not: a torn line mid-file
    monkeypatch.setattr(spool_module, "_write", real)
    spool.append(record(2).to_line())  # starts with a newline that ends the torn fragment
    assert spool.in_memory == 1
    sealed = spool.seal()
    assert sealed is not None
    assert sorted(r.request_id for r in read_all(sealed)) == ["r-0", "r-1", "r-2"]
    sealed.release(delete=True)


def test_memory_is_bounded_and_drops_are_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = Spool(tmp_path / "spool", max_memory=3)
    small.open()

    def refuse(fd: int, data: bytes) -> int:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(spool_module, "_write", refuse)
    for n in range(5):
        small.append(record(n).to_line())
    assert (small.in_memory, small.dropped) == (3, 2)
    assert [UsageRecord.from_line(line).request_id for line in small.take_memory()] == ["r-2", "r-3", "r-4"]
    small.restore_memory([record(9).to_line()])
    assert small.in_memory == 1
    small.close()  # the disk still refuses: the held record is lost, and counted
    assert small.dropped == 3


def test_when_no_segment_can_be_created_records_wait_in_memory_until_one_can(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool.append(record(0).to_line())
    create = Spool._create

    def refuse(self: Spool) -> Segment:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(Spool, "_create", refuse)
    first = spool.seal()  # sealed, but no new segment: appends go to memory
    assert first is not None
    spool.append(record(1).to_line())
    assert spool.in_memory == 1 and spool.seal() is None
    monkeypatch.setattr(Spool, "_create", create)
    second = spool.seal()  # a segment again: memory moves there, and it is sealed
    assert second is not None and spool.in_memory == 0
    assert [r.request_id for r in read_all(first)] + [r.request_id for r in read_all(second)] == ["r-0", "r-1"]
    first.release(delete=True)
    second.release(delete=True)


def test_stale_temporary_files_are_cleaned_and_fresh_ones_left(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir()
    stale, fresh = directory / "1-x-00000001.tmp", directory / "1-x-00000002.tmp"
    stale.write_bytes(b"")
    fresh.write_bytes(b"")
    os.utime(stale, (1, 1))
    assert Spool(directory).orphans(10) == []
    assert not stale.exists() and fresh.exists()
