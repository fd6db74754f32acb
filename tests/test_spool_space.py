"""The audit spool's disk space (gateway/audit/spool_space.py and the reclaiming in
gateway/audit/spool.py): a fully acknowledged newest segment is reclaimed down to the
chain head, and a full disk frees itself once the broker has taken what waits.

The full-disk tests run on a real 1 MiB tmpfs (tests/small_disk.py: root only; skipped
with the reason otherwise, failed under CI)."""

from __future__ import annotations

import errno
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.spool import Spool, SpoolDiskFull
from gateway.audit.spool_space import Reserve, free_bytes, is_out_of_space
from tests.small_disk import fill_disk, small_tmpfs


def payload(offset: int, size: int = 200) -> bytes:
    return b"rec-%08d|" % offset + bytes((offset + i) % 251 for i in range(size))


def offsets_on_disk(directory: Path) -> list[list[int]]:
    """The record offsets of each segment file, parsed independently of the spool."""
    out = []
    for path in sorted(directory.glob("*.seg")):
        data, pos, found = path.read_bytes(), 0, []
        while pos < len(data):
            magic, offset, length, crc = struct.unpack_from(">4sQII", data, pos)
            assert magic == b"LGS1"
            assert zlib.crc32(data[pos + 4 : pos + 16] + data[pos + 20 : pos + 20 + length]) == crc
            found.append(offset)
            pos += 20 + length
        out.append(found)
    return out


async def open_spool(directory: Path, **kwargs: Any) -> Spool:
    kwargs.setdefault("fsync", False)
    spool = Spool(directory, **kwargs)
    await spool.open()
    return spool


async def fill(spool: Spool, n: int, size: int = 200) -> None:
    for _ in range(n):
        await spool.append([payload(spool.end + 1, size)])


async def test_an_acked_newest_segment_past_compact_bytes_keeps_only_the_chain_head(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "spool"
    spool = await open_spool(directory, segment_bytes=1 << 20, compact_bytes=4096)
    await fill(spool, 40)  # ~9 KB, one segment: it would never roll at 1 MiB
    await spool.ack(20)
    assert offsets_on_disk(directory) == [list(range(1, 41))]  # not all acked: kept
    await spool.ack(40)
    assert offsets_on_disk(directory) == [[40]]
    assert (directory / f"{40:020d}.seg").exists()
    assert await spool.append([payload(41)]) == 41  # appends go on in the copy
    assert spool.read(40) == [(41, payload(41))]
    await spool.close()

    spool = Spool(directory, segment_bytes=1 << 20, fsync=False)
    recovery = await spool.open()
    assert recovery.corruptions == []
    assert recovery.last_payload == payload(41)
    assert (spool.acked, spool.end, spool.depth_records) == (40, 41, 1)
    await spool.close()


async def test_a_small_acked_newest_segment_is_kept_while_the_disk_has_room(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "spool"
    spool = await open_spool(directory, segment_bytes=1 << 20)  # compact at 256 KiB
    await fill(spool, 10)
    await spool.ack(10)
    assert offsets_on_disk(directory) == [list(range(1, 11))]  # no rewrite per ack
    await spool.close()


async def test_a_crash_between_the_copy_and_the_delete_loses_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = await open_spool(directory, segment_bytes=1 << 20, compact_bytes=4096)
    await fill(spool, 30)
    await spool.close()
    (directory / "acked").write_text("30\n")
    # What a crash leaves after the copy was renamed into place, before the original
    # was deleted: both files, the copy holding the original's last frame.
    original = directory / f"{1:020d}.seg"
    data = original.read_bytes()
    last = len(data) - (20 + len(payload(30)))
    (directory / f"{30:020d}.seg").write_bytes(data[last:])

    spool = Spool(directory, segment_bytes=1 << 20, fsync=False)
    recovery = await spool.open()
    assert recovery.corruptions == []  # the copy's frame is not "out of order"
    assert recovery.last_payload == payload(30)
    assert not original.exists()
    assert offsets_on_disk(directory) == [[30]]
    assert await spool.append([payload(31)]) == 31
    await spool.close()


async def test_a_full_disk_frees_itself_once_the_broker_took_everything(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        directory = disk / "spool"
        # The bound and the segment size far above the disk: only the disk stops it.
        spool = await open_spool(directory, segment_bytes=64 << 20, max_bytes=1 << 30)
        with pytest.raises(SpoolDiskFull) as refused:
            while True:
                await fill(spool, 1, size=2000)
        assert is_out_of_space(refused.value)
        assert "disk is full" in str(refused.value)
        end = spool.end
        assert end > 300
        assert spool.disk_full
        # Nothing is left for anything: only the reserve can pay for the bookkeeping.
        fill_disk(disk)
        (disk / "filler").unlink()  # the operator cleans up the stray file, say
        fill_disk(disk)
        assert free_bytes(disk) < 4096

        await spool.ack(end - 5)  # the broker took most: the ack file still gets written
        assert (directory / "acked").read_text().strip() == str(end - 5)
        assert spool.disk_full  # the newest segment holds unacked records: nothing freed
        await spool.ack(end)
        assert offsets_on_disk(directory) == [[end]]  # reclaimed, whatever its size
        assert not spool.disk_full
        assert Reserve(directory, 256 * 1024).held  # taken back
        assert free_bytes(disk) > 400_000
        assert await spool.append([payload(end + 1)]) == end + 1
        await spool.close()

        spool = await open_spool(directory)
        assert (spool.acked, spool.end) == (end, end + 1)
        await spool.close()


async def test_a_disk_filled_by_something_else_is_freed_by_the_acked_newest_segment(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        directory = disk / "spool"
        spool = await open_spool(directory, segment_bytes=64 << 20, compact_bytes=64 << 20)
        for _ in range(150):  # the broker takes everything as it comes
            await fill(spool, 1, size=2000)
            await spool.ack(spool.end)
        assert len(offsets_on_disk(directory)[0]) == 150
        fill_disk(disk)  # another process fills the disk: no ack will come to free it

        # Bigger than what the last page of the segment has left: it needs new blocks.
        assert await spool.append([payload(151, 20_000)]) == 151  # the acked segment made room
        assert offsets_on_disk(directory) == [[150, 151]]
        assert not spool.disk_full
        await spool.close()


async def test_records_never_take_the_reserve(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        directory = disk / "spool"
        spool = await open_spool(directory, segment_bytes=64 << 20, max_bytes=1 << 30)
        reserve = Reserve(directory, 256 * 1024)
        reserve.release()
        fill_disk(disk)  # no room for the reserve: appends are refused, not let in
        with pytest.raises(SpoolDiskFull):
            await spool.append([payload(1)])
        (disk / "filler").unlink()
        assert await spool.append([payload(1)]) == 1
        assert reserve.held
        await spool.close()


def test_out_of_space_errors() -> None:
    assert is_out_of_space(OSError(errno.ENOSPC, "No space left on device"))
    assert is_out_of_space(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_out_of_space(OSError(errno.EIO, "I/O error"))
    assert not is_out_of_space(ValueError("no"))


async def test_a_disk_filled_to_the_last_byte_reserve_and_all_still_frees_itself(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        directory = disk / "spool"
        spool = await open_spool(directory, segment_bytes=64 << 20, max_bytes=1 << 30)
        with pytest.raises(SpoolDiskFull):
            while True:
                await fill(spool, 1, size=2000)
        end = spool.end
        # Something else takes even the reserve's space (the spool lets nothing of its
        # own into it, but it shares the disk).
        Reserve(directory, 256 * 1024).release()
        fill_disk(disk)
        assert free_bytes(disk) == 0

        await spool.ack(end)  # the broker took everything: the ack is written in place
        assert (directory / "acked").read_text().strip() == str(end)
        assert offsets_on_disk(directory) == [[end]]  # the old segment first, then the copy
        assert free_bytes(disk) > 400_000
        await spool.close()

        spool = Spool(directory, segment_bytes=64 << 20, fsync=False)
        recovery = await spool.open()
        assert recovery.last_payload == payload(end, 2000)
        assert recovery.corruptions == []
        await spool.close()


async def test_maintain_frees_a_full_disk_with_no_ack_and_no_append_to_do_it(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        directory = disk / "spool"
        spool = await open_spool(directory, segment_bytes=64 << 20, compact_bytes=64 << 20)
        for _ in range(150):  # the broker takes everything as it comes
            await fill(spool, 1, size=2000)
            await spool.ack(spool.end)
        Reserve(directory, 256 * 1024).release()
        fill_disk(disk)  # another process fills the disk; nobody sends anything now

        assert await spool.maintain() is True  # what the shipper does when idle
        assert offsets_on_disk(directory) == [[150]]
        assert await spool.maintain() is False  # nothing more to free
        (disk / "filler").unlink()
        await spool.maintain()
        assert Reserve(directory, 256 * 1024).held
        await spool.close()
