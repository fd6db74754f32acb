"""The audit spool: group commit, paging reads, acks and trimming, recovery after a crash,
and quarantine of corrupted bytes."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import stat
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.spool import HEADER_SIZE, Spool, SpoolFull

REPO = Path(__file__).resolve().parent.parent


def payload(offset: int, size: int = 0) -> bytes:
    """A payload that says which offset it was appended at."""
    return b"rec-%08d|" % offset + bytes((offset + i) % 251 for i in range(size))


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def frames(path: Path) -> list[tuple[int, int, bytes]]:
    """(byte position, offset, payload) of each frame in a segment, parsed independently."""
    data = path.read_bytes()
    out = []
    pos = 0
    while pos < len(data):
        magic, offset, length, crc = struct.unpack_from(">4sQII", data, pos)
        assert magic == b"LGS1"
        body = data[pos + 20 : pos + 20 + length]
        assert len(body) == length
        assert zlib.crc32(data[pos + 4 : pos + 16] + body) == crc
        out.append((pos, offset, body))
        pos += 20 + length
    return out


def read_all(spool: Spool, after: int = 0) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    while batch := spool.read(after, max_records=97):
        out.extend(batch)
        after = batch[-1][0]
    return out


async def open_spool(directory: Path, **kwargs: Any) -> Spool:
    kwargs.setdefault("fsync", False)
    spool = Spool(directory, **kwargs)
    await spool.open()
    return spool


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[Spool]:
    s = await open_spool(tmp_path / "spool", segment_bytes=4096)
    yield s
    await s.close()


async def fill(spool: Spool, n: int, size: int = 40, batch: int = 10) -> None:
    start = spool.end + 1
    stop = start + n
    for first in range(start, stop, batch):
        await spool.append([payload(o, size) for o in range(first, min(first + batch, stop))])


async def test_round_trip_many_batches(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = await open_spool(directory, segment_bytes=4096, fsync=True)
    rng = random.Random(1)
    expected: list[tuple[int, bytes]] = []
    for _ in range(60):
        batch = [
            payload(len(expected) + i + 1, rng.randrange(0, 300))
            for i in range(rng.randrange(1, 30))
        ]
        last = await spool.append(batch)
        first = len(expected) + 1
        assert last == first + len(batch) - 1
        expected.extend(zip(range(first, last + 1), batch, strict=True))
    assert spool.end == len(expected)
    assert read_all(spool) == expected
    # One record larger than a segment still goes in, in a segment of its own.
    big = payload(spool.end + 1, 10_000)
    assert await spool.append([big]) == len(expected) + 1
    assert read_all(spool, len(expected)) == [(len(expected) + 1, big)]
    await spool.close()

    # On disk: segments named by their first offset, frames exactly as specified, offsets
    # consecutive across segments, private permissions.
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    on_disk = []
    files = segments(directory)
    assert len(files) > 5
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        parsed = frames(path)
        assert int(path.name[:20]) == parsed[0][1]
        assert path.stat().st_size <= 4096 or len(parsed) == 1
        on_disk.extend((o, p) for _, o, p in parsed)
    assert on_disk == [*expected, (len(expected) + 1, big)]
    assert frames(files[-1]) == [(0, len(expected) + 1, big)]


async def test_group_commit_is_one_write_per_segment(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = os.pwrite

    def counting(fd: int, data: Any, pos: int) -> int:
        calls.append(len(data))
        return real(fd, data, pos)

    monkeypatch.setattr(os, "pwrite", counting)
    await spool.append([payload(i, 10) for i in range(1, 51)])
    assert len(calls) == 1
    assert calls[0] == sum(HEADER_SIZE + len(payload(i, 10)) for i in range(1, 51))
    # A batch that fills the 4 KiB segment and spills into two new ones: three writes.
    calls.clear()
    await spool.append([payload(i, 100) for i in range(51, 121)])
    assert len(calls) == 3
    assert len(segments(spool._dir)) == 3


async def test_read_paging(tmp_path: Path) -> None:
    # Segments larger than the index stride, so that reads seek through the sparse index.
    spool = await open_spool(tmp_path / "spool", segment_bytes=256 * 1024)
    rng = random.Random(2)
    sizes = [rng.randrange(0, 600) for _ in range(3000)]
    for first in range(1, 3001, 100):
        await spool.append([payload(o, sizes[o - 1]) for o in range(first, first + 100)])
    assert len(segments(tmp_path / "spool")) >= 3

    pages = []
    after = 0
    while page := spool.read(after, max_records=7):
        assert len(page) <= 7
        pages.append(page)
        after = page[-1][0]
    assert [o for page in pages for o, _ in page] == list(range(1, 3001))
    assert all(len(page) == 7 for page in pages[:-1])

    # max_bytes: as many whole records as fit, but always at least one.
    page = spool.read(0, max_bytes=1)
    assert page == [(1, payload(1, sizes[0]))]
    limit = 5000
    page = spool.read(100, max_records=10_000, max_bytes=limit)
    total = sum(len(p) for _, p in page)
    assert total <= limit
    assert total + len(payload(page[-1][0] + 1, sizes[page[-1][0]])) > limit
    assert [o for o, _ in page] == list(range(101, 101 + len(page)))

    # Random starting points (no cursor to help) land on the right record.
    for after in [0, 1, 2999, *rng.sample(range(3000), 200)]:
        got = spool.read(after, max_records=3)
        want = [(o, payload(o, sizes[o - 1])) for o in range(after + 1, min(after + 4, 3001))]
        assert got == want, after
    assert spool.read(3000) == []
    assert spool.read(5000) == []
    await spool.close()


async def test_wait_wakes_on_append_and_times_out(spool: Spool) -> None:
    started = time.monotonic()
    assert await spool.wait(0, timeout=0.05) is False
    assert time.monotonic() - started >= 0.04

    waiter = asyncio.create_task(spool.wait(0, timeout=5))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await spool.append([b"one"])
    assert await asyncio.wait_for(waiter, 1) is True
    assert await spool.wait(0, timeout=0) is True  # already there: no waiting
    assert await spool.wait(1, timeout=0.01) is False


async def test_ack_trims_old_segments_but_keeps_the_newest(spool: Spool) -> None:
    directory = spool._dir
    await fill(spool, 300, size=60)
    files = segments(directory)
    assert len(files) >= 5
    ranges = {p: (frames(p)[0][1], frames(p)[-1][1]) for p in files}

    ack = ranges[files[2]][1] + 3  # just into the fourth segment
    await spool.ack(ack)
    assert spool.acked == ack
    assert (directory / "acked").read_text().strip() == str(ack)
    assert stat.S_IMODE((directory / "acked").stat().st_mode) == 0o600
    assert segments(directory) == files[3:]
    assert spool.depth_records == 300 - ack
    assert [o for o, _ in read_all(spool, ack)] == list(range(ack + 1, 301))

    await spool.ack(ack - 10)  # going back is a no-op
    assert spool.acked == ack
    with pytest.raises(ValueError):
        await spool.ack(301)

    await spool.ack(300)
    # The newest segment, all acked, is reclaimed down to a copy of the chain head.
    assert [[o for _, o, _ in frames(p)] for p in segments(directory)] == [[300]]
    assert spool.depth_records == 0
    assert spool.depth_bytes == 0
    assert spool.read(300) == []
    assert await spool.append([b"next"]) == 301
    assert spool.read(300) == [(301, b"next")]


async def test_reopen_replays_exactly_the_unacked(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = await open_spool(directory, segment_bytes=2048)
    await fill(spool, 200, size=30)
    await spool.ack(120)
    on_disk = sum(len(frames(p)) for p in segments(directory))
    await spool.close()

    spool = Spool(directory, segment_bytes=2048, fsync=False)
    recovery = await spool.open()
    assert recovery.corruptions == []
    assert recovery.records == on_disk
    assert recovery.unacked == 80
    assert recovery.last_payload == payload(200, 30)
    assert (spool.acked, spool.end, spool.depth_records) == (120, 200, 80)
    assert read_all(spool, spool.acked) == [(o, payload(o, 30)) for o in range(121, 201)]
    assert await spool.append([b"after restart"]) == 201
    await spool.close()


async def test_reopen_without_ack_file_resends_everything(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = await open_spool(directory, segment_bytes=2048)
    await fill(spool, 100, size=30)
    await spool.ack(60)
    kept = [o for p in segments(directory) for _, o, _ in frames(p)]
    assert kept[0] > 1  # some segments were trimmed
    await spool.close()
    (directory / "acked").unlink()

    spool = await open_spool(directory, segment_bytes=2048)
    assert spool.acked == 0
    assert [o for o, _ in read_all(spool, spool.acked)] == kept
    await spool.close()


async def test_everything_acked_keeps_the_chain_head(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = await open_spool(directory, segment_bytes=2048)
    await fill(spool, 100, size=30)
    await spool.ack(100)
    await spool.close()

    spool = Spool(directory, segment_bytes=2048, fsync=False)
    recovery = await spool.open()
    assert recovery.unacked == 0
    assert recovery.records >= 1
    assert recovery.last_payload == payload(100, 30)
    assert (spool.acked, spool.end) == (100, 100)
    assert await spool.append([b"x"]) == 101
    await spool.close()


async def test_ack_beyond_the_disk_is_clamped(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = await open_spool(directory)
    await fill(spool, 10)
    await spool.close()
    (directory / "acked").write_text("500\n")
    spool = await open_spool(directory)
    assert (spool.acked, spool.end, spool.depth_records) == (10, 10, 0)
    await spool.close()


async def test_spool_full_writes_nothing_and_recovers_after_ack(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    frame = HEADER_SIZE + len(payload(1, 80))
    spool = await open_spool(
        directory, segment_bytes=10 * frame, max_bytes=40 * frame, warn_ratio=0.5
    )
    await fill(spool, 19, size=80)
    assert not spool.near_full
    await fill(spool, 1, size=80)
    assert spool.near_full
    assert spool.depth_bytes == 20 * frame
    await fill(spool, 15, size=80)

    before = {p.name: p.read_bytes() for p in segments(directory)}
    with pytest.raises(SpoolFull):
        await spool.append([payload(o, 80) for o in range(36, 42)])  # 41 frames > 40
    assert {p.name: p.read_bytes() for p in segments(directory)} == before
    assert spool.end == 35
    assert spool.read(35) == []

    await spool.append([payload(o, 80) for o in range(36, 41)])  # exactly at the bound
    assert spool.depth_bytes == 40 * frame
    with pytest.raises(SpoolFull):
        await spool.append([b""])

    await spool.ack(25)  # frees the first two segments
    assert spool.depth_bytes == 20 * frame
    assert spool.near_full  # still half full
    assert await spool.append([payload(41, 80)]) == 41
    assert [o for o, _ in read_all(spool, 25)] == list(range(26, 42))
    await spool.close()


async def test_near_full_flag(tmp_path: Path) -> None:
    frame = HEADER_SIZE + 100
    spool = await open_spool(
        tmp_path / "spool", segment_bytes=4 * frame, max_bytes=20 * frame, warn_ratio=0.8
    )
    for i in range(1, 17):
        assert spool.near_full is (i > 16)
        await spool.append([bytes(100)])
    assert spool.depth_bytes == 16 * frame
    assert spool.near_full
    await spool.ack(8)
    assert spool.depth_bytes == 8 * frame
    assert not spool.near_full
    await spool.close()


async def test_flipped_byte_is_quarantined_and_the_rest_survives(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = await open_spool(directory, segment_bytes=4096)
    await fill(spool, 120, size=50)
    await spool.close()

    victim = segments(directory)[1]
    parsed = frames(victim)
    pos, bad_offset, body = parsed[len(parsed) // 2]
    data = bytearray(victim.read_bytes())
    data[pos + HEADER_SIZE + 5] ^= 0x40
    victim.write_bytes(data)
    bad = bytes(data[pos : pos + HEADER_SIZE + len(body)])

    spool = Spool(directory, segment_bytes=4096, fsync=False)
    recovery = await spool.open()
    assert len(recovery.corruptions) == 1
    c = recovery.corruptions[0]
    assert (c.segment, c.byte_offset, c.length, c.reason) == (
        victim.name,
        pos,
        len(bad),
        "bad checksum",
    )
    assert Path(c.quarantine_path) == directory / "quarantine" / f"{victim.name}.{pos}.bin"
    assert Path(c.quarantine_path).read_bytes() == bad
    assert recovery.records == 119
    assert recovery.last_payload == payload(120, 50)

    # Everything else is there, with its offset; the bad record is gone from the segment.
    expected = [(o, payload(o, 50)) for o in range(1, 121) if o != bad_offset]
    assert read_all(spool) == expected
    assert len(victim.read_bytes()) == len(data) - len(bad)
    assert await spool.append([b"more"]) == 121
    await spool.close()

    spool = Spool(directory, segment_bytes=4096, fsync=False)
    recovery = await spool.open()
    assert recovery.corruptions == []
    assert read_all(spool) == [*expected, (121, b"more")]
    await spool.close()


async def test_corrupt_first_frame_of_a_segment(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = await open_spool(directory, segment_bytes=1024)
    await fill(spool, 60, size=30)
    await spool.close()
    victim = segments(directory)[2]
    first = frames(victim)[0][1]
    data = bytearray(victim.read_bytes())
    data[1] ^= 0xFF  # the magic
    victim.write_bytes(data)

    spool = Spool(directory, segment_bytes=1024, fsync=False)
    recovery = await spool.open()
    assert [(c.segment, c.byte_offset, c.reason) for c in recovery.corruptions] == [
        (victim.name, 0, "bad header")
    ]
    assert [o for o, _ in read_all(spool)] == [o for o in range(1, 61) if o != first]
    await spool.close()
    spool = Spool(directory, segment_bytes=1024, fsync=False)
    assert (await spool.open()).corruptions == []
    assert [o for o, _ in read_all(spool)] == [o for o in range(1, 61) if o != first]
    await spool.close()


# With 50-byte payloads the last record sits alone in the newest segment, whose file then
# goes altogether.
@pytest.mark.parametrize("size", [40, 50])
async def test_torn_tail(tmp_path: Path, size: int) -> None:
    directory = tmp_path / "spool"
    spool = await open_spool(directory, segment_bytes=4096)
    await fill(spool, 50, size=size)
    await spool.close()
    newest = segments(directory)[-1]
    pos, offset, body = frames(newest)[-1]
    assert offset == 50
    assert (pos == 0) is (size == 50)
    data = newest.read_bytes()
    newest.write_bytes(data[:-3])

    spool = Spool(directory, segment_bytes=4096, fsync=False)
    recovery = await spool.open()
    [c] = recovery.corruptions
    assert (c.segment, c.byte_offset, c.length, c.reason) == (
        newest.name,
        pos,
        HEADER_SIZE + len(body) - 3,
        "torn tail",
    )
    assert Path(c.quarantine_path).read_bytes() == data[pos:-3]
    assert recovery.last_payload == payload(49, size)
    if pos:
        assert newest.stat().st_size == pos
    else:
        assert not newest.exists()
    assert spool.end == 49
    # The torn record's append never returned, so its offset is free again.
    assert await spool.append([b"after the tear"]) == 50
    await spool.close()

    spool = Spool(directory, segment_bytes=4096, fsync=False)
    recovery = await spool.open()
    assert recovery.corruptions == []
    assert read_all(spool) == [
        *((o, payload(o, size)) for o in range(1, 50)),
        (50, b"after the tear"),
    ]
    await spool.close()


async def test_garbage_after_the_tail(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = await open_spool(directory, segment_bytes=4096)
    await fill(spool, 30, size=50)
    await spool.close()
    newest = segments(directory)[-1]
    size = newest.stat().st_size
    garbage = b"\x00\xffnot a frame at all" * 7
    with newest.open("ab") as f:
        f.write(garbage)

    spool = Spool(directory, segment_bytes=4096, fsync=False)
    recovery = await spool.open()
    [c] = recovery.corruptions
    assert (c.byte_offset, c.length, c.reason) == (size, len(garbage), "bad header")
    assert Path(c.quarantine_path).read_bytes() == garbage
    assert newest.stat().st_size == size
    assert [o for o, _ in read_all(spool)] == list(range(1, 31))
    assert await spool.append([b"x"]) == 31
    await spool.close()


async def test_replayed_frame_is_out_of_order(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = await open_spool(directory)
    await fill(spool, 10)
    await spool.close()
    path = segments(directory)[0]
    data = path.read_bytes()
    first = data[: HEADER_SIZE + len(payload(1, 40))]
    path.write_bytes(data + first)  # a valid frame, but offset 1 again

    spool = Spool(directory, fsync=False)
    recovery = await spool.open()
    [c] = recovery.corruptions
    assert (c.byte_offset, c.length, c.reason) == (len(data), len(first), "offset out of order")
    assert Path(c.quarantine_path).read_bytes() == first
    assert [o for o, _ in read_all(spool)] == list(range(1, 11))
    await spool.close()


async def test_failed_write_is_rolled_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "spool"
    spool = await open_spool(directory, segment_bytes=2048)
    await fill(spool, 10, size=50)
    before = {p.name: p.read_bytes() for p in segments(directory)}
    real = os.pwrite
    calls = 0

    def failing(fd: int, data: Any, pos: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first write (into the current segment) went through
            raise OSError(28, "No space left on device")
        return real(fd, data, pos)

    monkeypatch.setattr(os, "pwrite", failing)
    with pytest.raises(OSError, match="No space"):
        await spool.append([payload(o, 50) for o in range(11, 60)])  # spans three segments
    monkeypatch.undo()
    assert calls == 2
    assert {p.name: p.read_bytes() for p in segments(directory)} == before
    assert spool.end == 10
    assert spool.read(10) == []

    assert await spool.append([payload(11, 50)]) == 11
    await spool.close()
    spool = Spool(directory, segment_bytes=2048, fsync=False)
    assert (await spool.open()).corruptions == []
    assert read_all(spool) == [(o, payload(o, 50)) for o in range(1, 12)]
    await spool.close()


async def test_cancelled_append_still_commits_what_it_wrote(spool: Spool) -> None:
    task = asyncio.create_task(spool.append([b"a", b"b"]))
    await asyncio.sleep(0)  # now inside the write thread
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The write could not be stopped, so its records count; nothing is half there.
    assert spool.end == 2
    assert spool.read(0) == [(1, b"a"), (2, b"b")]
    assert await spool.append([b"c"]) == 3


async def test_use_after_close_is_refused(spool: Spool) -> None:
    await spool.append([b"a"])
    await spool.close()
    with pytest.raises(RuntimeError):
        await spool.append([b"b"])
    with pytest.raises(RuntimeError):
        spool.read(0)
    assert await spool.wait(5, timeout=1) is False


CHILD = """
import asyncio, sys
from pathlib import Path
from gateway.audit.spool import Spool

async def main() -> None:
    spool = Spool(Path(sys.argv[1]), segment_bytes=16384)
    await spool.open()
    n = 0
    while True:
        batch = [b"rec-%d|" % (n + k) + b"x" * ((n + k) % 300) for k in range(1, 8)]
        last = await spool.append(batch)
        n += len(batch)
        sys.stdout.write(f"{last}\\n")
        sys.stdout.flush()

asyncio.run(main())
"""


async def test_sigkill_loses_nothing_that_was_acknowledged(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout is not None
    printed: list[int] = []
    deadline = time.monotonic() + 6
    try:
        while len(printed) < 150 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            printed.append(int(line))
    finally:
        os.kill(child.pid, signal.SIGKILL)
        out, err = child.communicate(timeout=10)
    assert child.returncode == -signal.SIGKILL, err.decode()
    printed += [int(line) for line in out.split()]
    assert len(printed) >= 20, err.decode()
    assert printed == sorted(printed)

    spool = Spool(directory, segment_bytes=16384, fsync=False)
    recovery = await spool.open()
    # Only a write cut short by the kill may be reported, and only at the very end.
    assert all(c.reason == "torn tail" for c in recovery.corruptions)
    records = dict(read_all(spool))
    for offset in range(1, printed[-1] + 1):
        assert records[offset] == b"rec-%d|" % offset + b"x" * (offset % 300)
    assert spool.end >= printed[-1]
    await spool.close()
