"""Durable write-ahead spool for audit records.

An audit event counts as logged once it is in this spool: appended, checksummed and
fsync'd. A sender reads records, ships them on (Kafka) and acks them; acked segments are
then deleted.

On disk, in ``directory``:

* ``{first_offset:020d}.seg``: segments of back-to-back frames (integers big-endian)::

      b"LGS1" | offset u64 | payload length u32 | crc32 u32 | payload

  The crc32 covers offset, length and payload. Offsets start at 1 and go up by one per
  record across the whole spool. A segment rolls over before it would exceed
  ``segment_bytes`` (a single larger record gets a segment of its own).
* ``acked``: the offset of the last acknowledged record, in decimal (missing means 0, so
  everything is sent again).
* ``quarantine/{segment}.{byte_offset}.bin``: bytes that recovery cut out, exactly as found.
* ``reserve``: preallocated space for the bookkeeping above when the disk is full
  (gateway/audit/spool_space.py); never holds records.

Guarantees:

* ``append`` returns once its whole batch has been written and fsync'd. If it fails, the
  segment is truncated back, so a batch is either wholly durable or absent.
* ``open`` replays from the ack position: a record may be delivered twice, but never lost.
* ``open`` checks every frame. A bad span (torn tail, bad checksum, bad header, offset out
  of order) is copied to ``quarantine/``, reported in ``SpoolRecovery.corruptions`` and
  cut from its segment. Valid records after the bad span keep their offsets, so there may
  be gaps in the offsets after a corruption. Offsets always strictly increase.
* The newest record (the head of the audit hash chain) survives a restart even when
  everything has been acked: a fully acknowledged newest segment is reclaimed by copying
  its last frame into a segment of its own (``{last_offset:020d}.seg``) before it is
  deleted. That happens when it has grown past ``compact_bytes``, and whatever its size
  when the disk is full, so a full disk frees itself once the broker has taken what waits.
* A full disk is reported as such (``SpoolDiskFull``, ``disk_full``), and the
  bookkeeping that frees space (the ``acked`` file, the chain head's copy) draws on the
  reserve when the disk has no room for it.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import errno
import mmap
import os
import re
import struct
import sys
import zlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.audit.spool_space import (
    Reserve,
    SpoolDiskFull,
    free_bytes,
    is_out_of_space,
    overwrite_in_place,
    sync_path,
    write_replacing,
)

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "Spool",
    "SpoolCorruption",
    "SpoolDiskFull",
    "SpoolFull",
    "SpoolRecovery",
]

MAGIC = b"LGS1"
_HEADER = struct.Struct(">4sQII")  # magic, offset, payload length, crc32
_OFFSET_LENGTH = struct.Struct(">QI")  # the header fields the crc covers
_CRC = struct.Struct(">I")
HEADER_SIZE = _HEADER.size
_MAX_PAYLOAD = 0xFFFFFFFF

# One index entry per this many bytes of segment: a read scans at most this far to get to
# its first record. That is 1,024 entries for a 64 MiB segment, whatever the record size.
_INDEX_STRIDE = 64 * 1024
_READ_CHUNK = 64 * 1024
_COPY_CHUNK = 1 << 20

_ACK_FILE = "acked"
_QUARANTINE = "quarantine"
_SEGMENT_NAME = re.compile(r"\d{20}\.seg")
_INCOMPLETE = "incomplete"  # frame runs past the end of the file; becomes a reason later

if sys.platform == "linux":
    # Flushes the data and the file size, but not the mtime: one disk write fewer.
    _datasync: Callable[[int], None] = os.fdatasync
else:
    _datasync = os.fsync


class SpoolFull(Exception):
    """Appending would exceed max_bytes."""


@dataclass(frozen=True, slots=True)
class SpoolCorruption:
    segment: str  # file name
    byte_offset: int  # where the bad span starts in that file
    length: int  # bytes quarantined
    quarantine_path: str  # where the bad bytes were copied
    reason: str  # "torn tail" | "bad checksum" | "bad header" | "offset out of order" | ...


@dataclass(frozen=True, slots=True)
class SpoolRecovery:
    records: int  # valid records found on disk
    unacked: int  # records after the ack position (to be sent again)
    last_payload: bytes | None  # payload of the newest valid record (the chain head)
    corruptions: list[SpoolCorruption]


def _new_index() -> array[int]:
    return array("Q")


@dataclass(slots=True, eq=False)
class _Segment:
    name: int  # the offset in the file name: the first offset ever written to it
    path: Path
    first: int = 0
    last: int = 0
    size: int = 0  # bytes of whole, durable frames; anything beyond is in flight
    count: int = 0
    last_at: int = 0  # byte position of the last frame (copied when the segment is reclaimed)
    # Sparse index: (offset, byte position) of one frame every _INDEX_STRIDE bytes.
    index_offsets: array[int] = field(default_factory=_new_index)
    index_positions: array[int] = field(default_factory=_new_index)
    next_index_at: int = 0
    read_fd: int | None = None


@dataclass(slots=True, eq=False)
class _Chunk:
    """The part of one append that goes into one segment."""

    segment: _Segment
    new: bool
    start: int
    data: bytearray = field(default_factory=bytearray)
    first: int = 0
    last: int = 0
    last_at: int = 0
    count: int = 0
    index_offsets: list[int] = field(default_factory=list)
    index_positions: list[int] = field(default_factory=list)
    next_index_at: int = 0
    fd: int = -1


def _segment_last(segment: _Segment) -> int:
    return segment.last


class Spool:
    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 64 * 2**20,
        max_bytes: int = 1024 * 2**20,
        warn_ratio: float = 0.8,
        fsync: bool = True,
        reserve_bytes: int = 256 * 1024,
        compact_bytes: int | None = None,
    ) -> None:
        if segment_bytes <= HEADER_SIZE:
            raise ValueError("segment_bytes must be larger than a frame header")
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if not 0 < warn_ratio <= 1:
            raise ValueError("warn_ratio must be in (0, 1]")
        self._dir = Path(directory)
        self._segment_bytes = segment_bytes
        self._max_bytes = max_bytes
        self._warn_ratio = warn_ratio
        self._fsync = fsync
        self._reserve = Reserve(self._dir, reserve_bytes)
        # A fully acked newest segment this big is reclaimed even when the disk has room.
        self._compact_bytes = segment_bytes // 4 if compact_bytes is None else compact_bytes
        self._acked_durable = 0  # the ack position the acked file holds
        self._doomed: list[Path] = []  # acked segments whose deletion failed: tried again
        self._space_need: int | None = None  # bytes the last append found no room for
        self._segments: list[_Segment] = []
        self._write_fd: int | None = None  # the newest segment's
        self._end = 0
        self._next = 1
        self._acked = 0
        # (last offset returned, its segment, byte position after it): the sender's next
        # read normally starts right there, without an index look-up.
        self._cursor: tuple[int, _Segment, int] | None = None
        self._lock = asyncio.Lock()
        self._ack_lock = asyncio.Lock()
        self._appended = asyncio.Event()
        self._opened = False
        self._closed = False

    # -- state -----------------------------------------------------------------------

    @property
    def acked(self) -> int:
        return self._acked

    @property
    def end(self) -> int:
        return self._end

    @property
    def depth_records(self) -> int:
        return self._end - self._acked

    @property
    def depth_bytes(self) -> int:
        acked = self._acked
        return sum(s.size for s in self._segments if s.last > acked)

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def near_full(self) -> bool:
        return self.depth_bytes >= self._warn_ratio * self._max_bytes

    @property
    def disk_free_bytes(self) -> int | None:
        try:
            return free_bytes(self._dir)
        except OSError:
            return None

    @property
    def disk_full(self) -> bool:
        """The last append found no room on the disk, and there is still not enough."""
        need = self._space_need
        if need is None:
            return False
        free = self.disk_free_bytes
        return free is None or free < need

    def _check_open(self) -> None:
        if not self._opened or self._closed:
            raise RuntimeError("the spool is not open")

    # -- open and recovery -------------------------------------------------------------

    async def open(self) -> SpoolRecovery:
        async with self._lock:
            if self._opened or self._closed:
                raise RuntimeError("a spool can be opened once")
            task = asyncio.ensure_future(asyncio.to_thread(self._recover))
            cancelled = await _settle(task)
            recovery = task.result()
            self._opened = True
            if cancelled:
                raise asyncio.CancelledError
            return recovery

    def _recover(self) -> SpoolRecovery:
        directory = self._dir
        self._segments = []
        if not directory.is_dir():
            directory.mkdir(mode=0o700, parents=True)
            directory.chmod(0o700)  # whatever the umask
        for stale in directory.glob("*.tmp"):  # an interrupted rewrite or ack; never data
            stale.unlink(missing_ok=True)
        acked = _read_ack(directory / _ACK_FILE)

        files = sorted(
            (int(p.name[:20]), p) for p in directory.iterdir() if _SEGMENT_NAME.fullmatch(p.name)
        )
        highest_name = files[-1][0] if files else 0
        nonempty: list[tuple[int, Path]] = []
        for name, path in files:
            if path.stat().st_size == 0:
                path.unlink()  # a crash between creating a segment and writing it
            else:
                nonempty.append((name, path))

        prev = 0
        records = unacked = 0
        last_payload: bytes | None = None
        corruptions: list[SpoolCorruption] = []
        for i, (name, path) in enumerate(nonempty):
            superseded = self._segments[-1] if self._segments else None
            if superseded is not None and name <= superseded.last <= acked:
                # A reclaimed segment's copy of its last frame, made before a crash kept
                # the original from being deleted: the original, all acked, goes now.
                self._segments.pop()
                superseded.path.unlink()
                records -= superseded.count
                prev = self._segments[-1].last if self._segments else 0
            scan = self._recover_segment(path, name, prev, i == len(nonempty) - 1, acked)
            corruptions.extend(scan.corruptions)
            if scan.segment is not None:
                self._segments.append(scan.segment)
                prev = scan.segment.last
                records += scan.segment.count
                unacked += scan.unacked
                last_payload = scan.last_payload

        self._end = prev
        # Never reuse an offset that may have been shipped: a segment whose records were
        # all quarantined still says, by its name, how far the offsets went.
        self._next = max(prev, highest_name - 1) + 1
        self._acked = self._acked_durable = min(acked, prev)
        while len(self._segments) > 1 and self._segments[0].last <= self._acked:
            self._segments.pop(0).path.unlink(missing_ok=True)  # trim an interrupted ack
        if self._segments:
            flags = os.O_WRONLY | os.O_CLOEXEC
            self._write_fd = os.open(self._segments[-1].path, flags)
        if self._fsync:
            _fsync_dir(directory)
        self._reclaim_at_open()
        return SpoolRecovery(records, unacked, last_payload, corruptions)

    def _reclaim_at_open(self) -> None:
        """A full disk at start is not fatal: reclaiming the newest segment may free it."""
        ack_file = self._dir / _ACK_FILE
        if not ack_file.exists():
            # Its block exists from now on, for an ack written in place on a full disk.
            with contextlib.suppress(OSError):
                write_replacing(ack_file, b"0\n", fsync=False, reserve=None)
        if not self._compactable(full=not self._reserve.hold()):
            return
        try:
            copy, frame = self._copy_head(), None
        except _NoRoomForCopy as tight:
            copy, frame = tight.segment, tight.frame
        self._release_newest()
        self._adopt(copy, self._drop_newest(copy, frame))

    def _recover_segment(
        self, path: Path, name: int, prev: int, newest: bool, acked: int
    ) -> _SegmentScan:
        segment = _Segment(name, path)
        spans: list[tuple[int, int, str]] = []  # (start, end, reason) of each bad span
        corruptions: list[SpoolCorruption] = []
        unacked = 0
        last_payload: bytes | None = None
        removed = 0
        rewrite: Path | None = None
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            size = len(mm)
            pos = 0
            last_frame = (0, 0)
            while pos < size:
                offset, length, why = _check_frame(mm, pos, size, prev, name)
                if why is None:
                    kept = pos - removed  # its position once the bad spans are cut out
                    if segment.count == 0:
                        segment.first = offset
                    if kept >= segment.next_index_at:
                        segment.index_offsets.append(offset)
                        segment.index_positions.append(kept)
                        segment.next_index_at = kept + _INDEX_STRIDE
                    segment.last = prev = offset
                    segment.last_at = kept
                    segment.count += 1
                    if offset > acked:
                        unacked += 1
                    last_frame = (pos, length)
                    pos += HEADER_SIZE + length
                    continue
                resume = _resync(mm, pos + 1, size, prev, name)
                end = size if resume is None else resume
                spans.append((pos, end, _reason(why, resume is None, newest)))
                removed += end - pos
                pos = end
            segment.size = size - removed
            if segment.count:
                start = last_frame[0] + HEADER_SIZE
                last_payload = mm[start : start + last_frame[1]]
            for start, end, reason in spans:
                quarantined = self._quarantine(path.name, mm, start, end)
                corruptions.append(
                    SpoolCorruption(path.name, start, end - start, str(quarantined), reason)
                )
            tail_only = len(spans) == 1 and spans[0][1] == size
            if spans and segment.count and not tail_only:
                rewrite = path.with_name(path.name + ".tmp")
                self._write_without(rewrite, mm, spans)
        if spans:
            self._cut_bad_spans(path, segment, rewrite)
        return _SegmentScan(segment if segment.count else None, unacked, last_payload, corruptions)

    def _cut_bad_spans(self, path: Path, segment: _Segment, rewrite: Path | None) -> None:
        """Take the quarantined spans out of the segment file: delete a segment with no good
        record left, put its rewrite in its place, or cut off its torn tail."""
        # The bad bytes are in quarantine (and synced) before they leave the segment.
        if self._fsync:
            _fsync_dir(self._dir / _QUARANTINE)
            _fsync_dir(self._dir)
        if not segment.count:
            path.unlink()
        elif rewrite is not None:
            os.replace(rewrite, path)
        else:
            os.truncate(path, segment.size)
        if self._fsync:
            _fsync_dir(path.parent)

    def _quarantine(self, segment: str, mm: mmap.mmap, start: int, end: int) -> Path:
        directory = self._dir / _QUARANTINE
        directory.mkdir(mode=0o700, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        n = 0
        while True:
            # A segment keeps being appended to after a torn tail is cut: a later bad span
            # may start at the same byte, and must not overwrite the earlier one.
            suffix = ".bin" if n == 0 else f".{n}.bin"
            path = directory / f"{segment}.{start}{suffix}"
            try:
                fd = os.open(path, flags, 0o600)
            except FileExistsError:
                n += 1
                continue
            break
        try:
            for pos in range(start, end, _COPY_CHUNK):
                _write_all(fd, mm[pos : min(end, pos + _COPY_CHUNK)])
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        return path

    def _write_without(self, path: Path, mm: mmap.mmap, spans: list[tuple[int, int, str]]) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            pos = 0
            for start, end, _ in [*spans, (len(mm), len(mm), "")]:
                for at in range(pos, start, _COPY_CHUNK):
                    _write_all(fd, mm[at : min(start, at + _COPY_CHUNK)])
                pos = end
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    # -- append ------------------------------------------------------------------------

    async def append(self, payloads: list[bytes]) -> int:
        """Make ``payloads`` durable as consecutive records; return the last one's offset.

        An empty list appends nothing and returns ``end``. Raises ``SpoolFull`` past
        ``max_bytes``, ``SpoolDiskFull`` when the disk has no room even after reclaiming
        what the broker acknowledged."""
        async with self._lock:
            self._check_open()
            if not payloads:
                return self._end
            try:
                return await self._append_locked(payloads)
            except OSError as exc:
                # Room may be had by reclaiming the acknowledged newest segment: the broker
                # took everything and no ack comes to do it.
                if not is_out_of_space(exc) or not await self._reclaim_newest(full=True):
                    raise self._disk_full(exc, payloads) from exc
            try:
                return await self._append_locked(payloads)
            except OSError as exc:
                raise self._disk_full(exc, payloads) from exc

    async def _append_locked(self, payloads: list[bytes]) -> int:
        chunks, total = self._plan(payloads)
        depth = self.depth_bytes
        if depth + total > self._max_bytes:
            raise SpoolFull(
                f"{total} bytes would take the spool past its bound "
                f"({depth} of {self._max_bytes} bytes held)"
            )
        if not self._reserve.held and not await asyncio.to_thread(self._reserve.hold):
            # Records never take the space the bookkeeping needs to free the disk.
            raise OSError(errno.ENOSPC, "no room for the spool's reserve")
        task = asyncio.ensure_future(asyncio.to_thread(self._write, chunks))
        # The write cannot be stopped half-way: wait for it even when cancelled, so that
        # what is in memory matches what is on disk.
        cancelled = await _settle(task)
        error = task.exception()
        if error is None:
            self._commit(chunks, task.result())
            if self._space_need is not None and not self.disk_full:
                # Not on the first record that squeezes into a last page: only once
                # there is room again, with a margin (no flapping at the edge).
                self._space_need = None
        if cancelled:
            raise asyncio.CancelledError
        if error is not None:
            raise error
        return self._end

    def _disk_full(self, exc: OSError, payloads: list[bytes]) -> OSError:
        """The error an append that met a full disk raises (other errors as they are)."""
        if not is_out_of_space(exc):
            return exc
        size = sum(HEADER_SIZE + len(p) for p in payloads)
        # Room again means room for this and the reserve's worth more.
        self._space_need = size + self._reserve.size
        free = self.disk_free_bytes
        return SpoolDiskFull(
            f"the audit spool's disk is full ({exc.strerror or exc}): "
            f"{'an unknown number of' if free is None else free} bytes free in {self._dir} "
            f"for {size} bytes of records; acknowledged records are reclaimed as the "
            "broker takes them"
        )

    def _plan(self, payloads: list[bytes]) -> tuple[list[_Chunk], int]:
        """Lay the frames out over the current segment and as many new ones as needed."""
        chunks: list[_Chunk] = []
        chunk: _Chunk | None = None
        if self._segments:
            current = self._segments[-1]
            chunk = _Chunk(current, False, current.size, next_index_at=current.next_index_at)
        offset = self._next
        total = 0
        pack_ol, pack_crc, crc32 = _OFFSET_LENGTH.pack, _CRC.pack, zlib.crc32
        for payload in payloads:
            length = len(payload)
            if length > _MAX_PAYLOAD:
                raise ValueError(f"a record of {length} bytes does not fit a frame")
            frame = HEADER_SIZE + length
            pos = 0 if chunk is None else chunk.start + len(chunk.data)
            if chunk is None or (pos > 0 and pos + frame > self._segment_bytes):
                path = self._dir / f"{offset:020d}.seg"
                chunk = _Chunk(_Segment(offset, path), True, 0)
                pos = 0
            if not chunk.count:
                chunks.append(chunk)
                chunk.first = offset
            if pos >= chunk.next_index_at:
                chunk.index_offsets.append(offset)
                chunk.index_positions.append(pos)
                chunk.next_index_at = pos + _INDEX_STRIDE
            chunk.last_at = pos
            ol = pack_ol(offset, length)
            data = chunk.data
            data += MAGIC
            data += ol
            data += pack_crc(crc32(payload, crc32(ol)))
            data += payload
            chunk.last = offset
            chunk.count += 1
            total += frame
            offset += 1
        return chunks, total

    def _write(self, chunks: list[_Chunk]) -> list[int]:
        """One write and one fsync per segment touched. Returns the fds of new segments."""
        opened: list[int] = []
        done: list[_Chunk] = []
        try:
            for chunk in chunks:
                if chunk.new:
                    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                    chunk.fd = os.open(chunk.segment.path, flags, 0o600)
                    opened.append(chunk.fd)
                else:
                    assert self._write_fd is not None
                    chunk.fd = self._write_fd
                done.append(chunk)  # before writing: a partial write is rolled back too
                _pwrite_all(chunk.fd, chunk.data, chunk.start)
                if self._fsync:
                    _datasync(chunk.fd)
            if opened and self._fsync:
                _fsync_dir(self._dir)  # the new segments' names must survive a crash too
        except BaseException:
            self._roll_back(done, opened)
            raise
        return opened

    def _roll_back(self, done: list[_Chunk], opened: list[int]) -> None:
        for chunk in done:
            if chunk.new:
                chunk.segment.path.unlink(missing_ok=True)
            else:
                try:
                    os.ftruncate(chunk.fd, chunk.start)
                    if self._fsync:
                        _datasync(chunk.fd)
                except OSError:
                    # Left as it is, the tail is overwritten by the next append, or cut
                    # (and reported) by recovery.
                    pass
        for fd in opened:
            os.close(fd)

    def _commit(self, chunks: list[_Chunk], opened: list[int]) -> None:
        for chunk in chunks:
            segment = chunk.segment
            if chunk.new:
                segment.first = chunk.first
                self._segments.append(segment)
            segment.last = chunk.last
            segment.last_at = chunk.last_at
            segment.size = chunk.start + len(chunk.data)
            segment.count += chunk.count
            segment.index_offsets.extend(chunk.index_offsets)
            segment.index_positions.extend(chunk.index_positions)
            segment.next_index_at = chunk.next_index_at
        if opened:
            # Only the newest segment is written to from now on.
            for fd in [*([self._write_fd] if self._write_fd is not None else []), *opened[:-1]]:
                os.close(fd)
            self._write_fd = opened[-1]
        self._end = chunks[-1].last
        self._next = self._end + 1
        self._wake()

    def _wake(self) -> None:
        self._appended.set()
        self._appended = asyncio.Event()

    # -- read --------------------------------------------------------------------------

    def read(
        self, after: int, *, max_records: int = 1000, max_bytes: int = 1 << 20
    ) -> list[tuple[int, bytes]]:
        """Records with offset > ``after``, in order: at most ``max_records``, and at most
        ``max_bytes`` of payload unless the first record alone is larger."""
        self._check_open()
        out: list[tuple[int, bytes]] = []
        if after >= self._end or max_records <= 0:
            return out
        segments = self._segments
        i = bisect.bisect_right(segments, after, key=_segment_last)
        segment = segments[i]
        pos = self._start_position(segment, after)
        total = 0
        while True:
            pos, total, stopped = self._read_segment(
                segment, pos, after, out, max_records, max_bytes, total
            )
            i += 1
            if stopped or i == len(segments):
                break
            segment, pos = segments[i], 0
        if out:
            self._cursor = (out[-1][0], segment, pos)
        return out

    def _start_position(self, segment: _Segment, after: int) -> int:
        cursor = self._cursor
        if cursor is not None and cursor[0] == after and cursor[1] is segment:
            return cursor[2]
        # The last indexed frame at or before the first wanted one.
        i = bisect.bisect_right(segment.index_offsets, after + 1) - 1
        return segment.index_positions[i] if i >= 0 else 0

    def _read_segment(
        self,
        segment: _Segment,
        pos: int,
        after: int,
        out: list[tuple[int, bytes]],
        max_records: int,
        max_bytes: int,
        total: int,
    ) -> tuple[int, int, bool]:
        """Append the wanted records from ``pos`` on; return (position reached, payload
        bytes so far, whether a limit stopped it)."""
        fd = segment.read_fd
        if fd is None:
            fd = segment.read_fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
        limit = segment.size  # bytes past it may be an append in flight
        buf = b""
        base = pos  # buf holds the file's bytes [base, base + len(buf))
        while pos < limit:
            rel = pos - base
            if rel + HEADER_SIZE > len(buf):
                buf = os.pread(fd, min(_READ_CHUNK, limit - pos), pos)
                base, rel = pos, 0
                if len(buf) < HEADER_SIZE:
                    raise _corrupt(segment, pos)
            magic, offset, length, crc = _HEADER.unpack_from(buf, rel)
            if magic != MAGIC:
                raise _corrupt(segment, pos)
            body = rel + HEADER_SIZE
            if body + length > len(buf):
                buf = os.pread(fd, min(max(_READ_CHUNK, HEADER_SIZE + length), limit - pos), pos)
                base, rel, body = pos, 0, HEADER_SIZE
                if len(buf) < body + length:
                    raise _corrupt(segment, pos)
            if offset > after:
                if len(out) >= max_records or (out and total + length > max_bytes):
                    return pos, total, True
                payload = buf[body : body + length]
                if zlib.crc32(payload, zlib.crc32(buf[rel + 4 : body - 4])) != crc:
                    raise _corrupt(segment, pos)
                out.append((offset, payload))
                total += length
            pos += HEADER_SIZE + length
        return pos, total, len(out) >= max_records

    # The caller's API takes a timeout (the shipper polls with one).
    async def wait(self, after: int, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Until a record with offset > ``after`` exists (True), or the timeout or close
        (False)."""
        try:
            async with asyncio.timeout(timeout):
                while self._end <= after:
                    if self._closed:
                        return False
                    await self._appended.wait()
        except TimeoutError:
            return False
        return True

    # -- ack ---------------------------------------------------------------------------

    async def ack(self, offset: int) -> None:
        """Everything up to ``offset`` is safely elsewhere."""
        self._check_open()
        if offset > self._end:
            raise ValueError(f"cannot ack {offset}: the newest record is {self._end}")
        async with self._ack_lock:
            if offset <= self._acked:
                return
            self._acked = offset
            doomed, self._doomed = self._doomed, []
            # The newest segment stays here: appends go there (it is reclaimed below).
            while len(self._segments) > 1 and self._segments[0].last <= offset:
                segment = self._segments.pop(0)
                _close_reader(segment)
                doomed.append(segment.path)
            try:
                await _in_thread(self._persist_ack, offset, doomed, False)
            except OSError as exc:
                if not is_out_of_space(exc):
                    self._doomed = doomed
                    raise
                # The disk is full: the reserve gives the ack file room. No append runs
                # meanwhile, or it could take the space released.
                async with self._lock:
                    try:
                        await _in_thread(self._persist_ack, offset, doomed, True)
                    except OSError:
                        self._doomed = doomed
                        raise
            self._acked_durable = offset
            full = self._space_need is not None or not self._reserve.held
            if self._compactable(full=full):
                async with self._lock:
                    # The ack stands either way; a failed reclaim is tried again by
                    # maintain() or the next append.
                    with contextlib.suppress(OSError):
                        await self._reclaim_newest(full=full)

    async def maintain(self) -> bool:
        """Free what can be freed while the disk is full (or the reserve is missing), with
        no append or ack to do it: the acked newest segment, segments whose deletion
        failed, the reserve taken back. The shipper calls it when idle. Returns whether
        the newest segment was reclaimed."""
        self._check_open()
        if self._space_need is None and not self._doomed and self._reserve.held:
            return False
        async with self._ack_lock, self._lock:
            doomed, self._doomed = self._doomed, []
            try:
                await _in_thread(_unlink_all, doomed)
            except OSError:
                self._doomed.extend(doomed)
            try:
                if not self._reserve.held:
                    await _in_thread(self._reserve.hold)
                return await self._reclaim_newest(full=True)
            except OSError:
                return False

    def _persist_ack(self, offset: int, doomed: list[Path], use_reserve: bool) -> None:
        # Written before the segments go: a crash in between only leaves them for the
        # next open to trim. No fsync: a lost ack only means records are sent again.
        reserve = self._reserve if use_reserve else None
        path, data = self._dir / _ACK_FILE, b"%d\n" % offset
        try:
            write_replacing(path, data, fsync=False, reserve=reserve)
        except OSError as exc:
            # No room and no reserve (something else took it): in place, which needs none.
            if not (use_reserve and is_out_of_space(exc) and path.exists()):
                raise
            overwrite_in_place(path, data)
        for path in doomed:
            path.unlink(missing_ok=True)
        if use_reserve:
            self._reserve.hold()  # in the space the deletions freed, if they did

    # -- reclaiming the newest segment -------------------------------------------------

    def _compactable(self, *, full: bool) -> bool:
        """Whether the newest segment is all acked (durably) and worth reclaiming: grown
        past ``compact_bytes``, or any size when the disk is ``full``."""
        if not self._segments:
            return False
        newest = self._segments[-1]
        if newest.count < 2 or newest.last > self._acked_durable:
            return False  # a single frame is already as small as the chain head's copy
        return full or newest.size >= self._compact_bytes

    async def _reclaim_newest(self, *, full: bool) -> bool:
        """Replace the acked newest segment by a copy of its last frame (the caller holds
        the append lock); return whether it was."""
        if not self._compactable(full=full):
            return False
        old = self._segments[-1]
        copying = asyncio.ensure_future(asyncio.to_thread(self._copy_head))
        cancelled = await _settle(copying)
        error = copying.exception()
        # No room even for the copy, reserve and all (something else filled the disk):
        # the old segment, all acked, goes first and the copy is written in the space
        # that frees. Only a crash in between loses the head (then read from the store).
        tight = isinstance(error, _NoRoomForCopy)
        if error is not None and not tight:
            if cancelled:
                raise asyncio.CancelledError
            raise error  # nothing changed (a stray copy is replaced later)
        copy = error.segment if isinstance(error, _NoRoomForCopy) else copying.result()
        frame = error.frame if isinstance(error, _NoRoomForCopy) else None
        self._release_newest()  # its blocks are freed only once nothing holds it open
        dropping = asyncio.ensure_future(asyncio.to_thread(self._drop_newest, copy, frame))
        cancelled |= await _settle(dropping)
        if dropping.exception() is not None and old.path.exists():
            self._write_fd = os.open(old.path, os.O_WRONLY | os.O_CLOEXEC)  # go on in it
        elif dropping.exception() is None:
            self._adopt(copy, dropping.result())
        if cancelled:
            raise asyncio.CancelledError
        dropping.result()
        return True

    def _copy_head(self) -> _Segment:
        """On disk, the newest segment's last frame into ``{last:020d}.seg``; returns that
        segment. From here a crash leaves both files; recovery deletes the old one."""
        old = self._segments[-1]
        fd = old.read_fd
        if fd is None:
            fd = old.read_fd = os.open(old.path, os.O_RDONLY | os.O_CLOEXEC)
        frame = os.pread(fd, old.size - old.last_at, old.last_at)
        if len(frame) != old.size - old.last_at:
            raise _corrupt(old, old.last_at)
        if self._fsync:
            # The copy supersedes the segment only under an ack that survives a crash.
            sync_path(self._dir / _ACK_FILE)
        path = self._dir / f"{old.last:020d}.seg"
        segment = _Segment(old.last, path, old.last, old.last, len(frame), 1, 0)
        segment.index_offsets.append(old.last)
        segment.index_positions.append(0)
        segment.next_index_at = _INDEX_STRIDE
        try:
            write_replacing(path, frame, fsync=self._fsync, reserve=self._reserve)
        except OSError as exc:
            if is_out_of_space(exc):
                raise _NoRoomForCopy(segment, frame) from exc
            raise
        return segment

    def _release_newest(self) -> None:
        _close_reader(self._segments[-1])
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        self._cursor = None

    def _drop_newest(self, copy: _Segment, frame: bytes | None) -> int:
        """Delete the segment the copy supersedes (then write the copy, if ``frame`` is
        given: there was no room for it before), take the reserve back in the space
        that freed; returns the copy's write fd."""
        old = self._segments[-1].path
        if frame is not None:
            old.unlink()
            if self._fsync:
                _fsync_dir(self._dir)
            write_replacing(copy.path, frame, fsync=self._fsync, reserve=None)
        fd = os.open(copy.path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            old.unlink(missing_ok=True)
        except OSError:
            self._doomed.append(old)  # tried again at the next ack; recovery deletes it too
        if self._fsync:
            _fsync_dir(self._dir)
        self._reserve.hold()
        return fd

    def _adopt(self, segment: _Segment, write_fd: int) -> None:
        """In memory: the copy takes the reclaimed segment's place."""
        self._segments[-1] = segment
        self._write_fd = write_fd

    async def close(self) -> None:
        # The ack lock first, as ack() takes them.
        async with self._ack_lock, self._lock:
            if self._closed:
                return
            self._closed = True
            for segment in self._segments:
                _close_reader(segment)
            if self._write_fd is not None:
                os.close(self._write_fd)
                self._write_fd = None
            self._cursor = None
        self._wake()


class _NoRoomForCopy(OSError):
    """The chain head's copy found no room (the reserve spent too)."""

    def __init__(self, segment: _Segment, frame: bytes) -> None:
        super().__init__(errno.ENOSPC, "no room for the chain head's copy")
        self.segment = segment
        self.frame = frame


@dataclass(slots=True)
class _SegmentScan:
    segment: _Segment | None  # None when nothing valid was left in it
    unacked: int
    last_payload: bytes | None
    corruptions: list[SpoolCorruption]


def _check_frame(
    mm: mmap.mmap, pos: int, size: int, prev: int, floor: int
) -> tuple[int, int, str | None]:
    """(offset, payload length, None) for a valid frame at ``pos``, else a reason."""
    avail = size - pos
    if avail < HEADER_SIZE:
        head = mm[pos : pos + min(avail, len(MAGIC))]
        return 0, 0, _INCOMPLETE if MAGIC.startswith(head) else "bad header"
    magic, offset, length, crc = _HEADER.unpack_from(mm, pos)
    if magic != MAGIC:
        return offset, length, "bad header"
    if length > avail - HEADER_SIZE:
        return offset, length, _INCOMPLETE
    body = pos + HEADER_SIZE
    if zlib.crc32(mm[body : body + length], zlib.crc32(mm[pos + 4 : body - 4])) != crc:
        return offset, length, "bad checksum"
    # Strictly increasing rather than exactly +1: recovery cuts bad spans out and leaves
    # the offsets of what follows as they are.
    if offset <= prev or offset < floor:
        return offset, length, "offset out of order"
    return offset, length, None


def _resync(mm: mmap.mmap, start: int, size: int, prev: int, floor: int) -> int | None:
    """Where the next fully valid frame starts, if anywhere."""
    pos = mm.find(MAGIC, start)
    while pos != -1:
        if _check_frame(mm, pos, size, prev, floor)[2] is None:
            return pos
        pos = mm.find(MAGIC, pos + 1)
    return None


def _reason(why: str, at_end: bool, newest: bool) -> str:
    if why != _INCOMPLETE:
        return why
    if not at_end:
        return "bad length"  # a valid frame follows: the length field is wrong
    return "torn tail" if newest else "truncated segment"


def _read_ack(path: Path) -> int:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return 0
    try:
        return max(0, int(text.strip()))
    except ValueError:
        return 0  # unreadable: send everything again rather than guess


async def _settle(task: asyncio.Future[Any]) -> bool:
    """Wait for ``task`` to finish even if cancelled meanwhile; return whether we were."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError:
            cancelled = True
    return cancelled


def _pwrite_all(fd: int, data: bytearray, pos: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, pos)
        if n <= 0:
            raise OSError(errno.EIO, "short write to the audit spool")
        view = view[n:]
        pos += n


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "short write to the audit spool")
        view = view[n:]


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a thread, waited for even when cancelled (it cannot be stopped
    half-way); then cancelled, or its result."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    cancelled = await _settle(task)
    if cancelled:
        raise asyncio.CancelledError
    return task.result()


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _close_reader(segment: _Segment) -> None:
    if segment.read_fd is not None:
        os.close(segment.read_fd)
        segment.read_fd = None


def _corrupt(segment: _Segment, pos: int) -> OSError:
    return OSError(errno.EIO, f"audit spool segment {segment.path.name} is corrupt at byte {pos}")
