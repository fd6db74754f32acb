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
* ``indexed`` (with ``keep_until_indexed``): the offset up to which the records are known
  to be in the audit store itself, not only on the broker (written at open; missing, as
  in a spool from before it, means ``acked``).
  Segments are kept until both positions have passed them, so that what a broker loses
  after acknowledging it can be sent again (``rewind``). When keeping them would take the
  spool past ``max_bytes``, the oldest acknowledged segments go anyway, and
  ``released_unindexed`` counts their records: appends are refused only for records the
  broker has not acknowledged.
* ``quarantine/{segment}.{byte_offset}.bin``: bytes that recovery cut out, exactly as found.

Guarantees:

* ``append`` returns once its whole batch has been written and fsync'd. If it fails, the
  segment is truncated back, so a batch is either wholly durable or absent.
* ``open`` replays from the ack position: a record may be delivered twice, but never lost.
* ``open`` checks every frame. A bad span (torn tail, bad checksum, bad header, offset out
  of order) is copied to ``quarantine/``, reported in ``SpoolRecovery.corruptions`` and
  cut from its segment. Valid records after the bad span keep their offsets, so there may
  be gaps in the offsets after a corruption. Offsets always strictly increase.
* The newest segment is never deleted, so the newest record (the head of the audit hash
  chain) survives a restart even when everything has been acked.
"""

from __future__ import annotations

import asyncio
import bisect
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
_INDEXED_FILE = "indexed"
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
        keep_until_indexed: bool = False,
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
        self._segments: list[_Segment] = []
        self._write_fd: int | None = None  # the newest segment's
        self._end = 0
        self._next = 1
        self._acked = 0
        self._keep = keep_until_indexed
        self._indexed = 0  # with _keep: up to here the store has the records
        self.released_unindexed = 0  # records dropped for room before the store had them
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
    def indexed(self) -> int:
        """Up to this offset the records are in the store (``acked`` unless kept)."""
        return self._indexed if self._keep else self._acked

    @property
    def unindexed_records(self) -> int:
        """Records the broker acknowledged that the store is not known to have yet."""
        return self._acked - self.indexed

    def _floor(self) -> int:
        """Segments whose records are all at or below this offset may be deleted."""
        return min(self._acked, self._indexed) if self._keep else self._acked

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
        indexed = _read_ack(directory / _INDEXED_FILE, missing=acked)

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
        self._acked = min(acked, prev)
        self._indexed = min(indexed, self._acked)
        # Written at once: a missing file means "as acked" (a spool from before it existed),
        # which must not be what a new spool that has released nothing yet reads back.
        if self._keep:
            self._persist_ack(self._indexed, [], _INDEXED_FILE)
        else:
            (directory / _INDEXED_FILE).unlink(missing_ok=True)
        while len(self._segments) > 1 and self._segments[0].last <= self._floor():
            self._segments.pop(0).path.unlink(missing_ok=True)  # trim an interrupted ack
        if self._segments:
            flags = os.O_WRONLY | os.O_CLOEXEC
            self._write_fd = os.open(self._segments[-1].path, flags)
        if self._fsync:
            _fsync_dir(directory)
        return SpoolRecovery(records, unacked, last_payload, corruptions)

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

        An empty list appends nothing and returns ``end``."""
        async with self._lock:
            self._check_open()
            if not payloads:
                return self._end
            chunks, total = self._plan(payloads)
            depth = self.depth_bytes
            if self._keep and depth + total <= self._max_bytes:
                await self._make_room(total)
            if depth + total > self._max_bytes:
                raise SpoolFull(
                    f"{total} bytes would take the spool past its bound "
                    f"({depth} of {self._max_bytes} bytes held)"
                )
            task = asyncio.ensure_future(asyncio.to_thread(self._write, chunks))
            # The write cannot be stopped half-way: wait for it even when cancelled, so that
            # what is in memory matches what is on disk.
            cancelled = await _settle(task)
            error = task.exception()
            if error is None:
                self._commit(chunks, task.result())
            if cancelled:
                raise asyncio.CancelledError
            if error is not None:
                raise error
            return self._end

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
            await self._persist(_ACK_FILE, offset, self._trim())

    def _trim(self) -> list[Path]:
        """Take the segments below the floor out of the spool; return their files."""
        doomed: list[Path] = []
        # The newest segment stays: it holds the chain head, and appends go there.
        while len(self._segments) > 1 and self._segments[0].last <= self._floor():
            segment = self._segments.pop(0)
            _close_reader(segment)
            doomed.append(segment.path)
        return doomed

    async def _persist(self, name: str, offset: int, doomed: list[Path]) -> None:
        task = asyncio.ensure_future(asyncio.to_thread(self._persist_ack, offset, doomed, name))
        cancelled = await _settle(task)
        if cancelled:
            raise asyncio.CancelledError
        task.result()

    async def release(self, offset: int) -> None:
        """Everything up to ``offset`` is in the store: the spool need not keep it."""
        self._check_open()
        async with self._ack_lock:
            offset = min(offset, self._acked)
            if not self._keep or offset <= self._indexed:
                return
            self._indexed = offset
            await self._persist(_INDEXED_FILE, offset, self._trim())

    async def rewind(self, offset: int) -> int:
        """Take back the acknowledgements after ``offset`` (the broker lost them), so that
        those records are read and sent again; never before what the spool still holds or
        what the store has. Returns the new ack position."""
        self._check_open()
        async with self._ack_lock:
            first = self._segments[0].first - 1 if self._segments else self._end
            offset = max(offset, self.indexed, first, 0)
            if offset >= self._acked:
                return self._acked
            self._acked = offset
            self._cursor = None
            await self._persist(_ACK_FILE, offset, [])
            return offset

    async def _make_room(self, total: int) -> None:
        """Drop the oldest acknowledged segments the store has not confirmed while the
        spool's files would otherwise exceed ``max_bytes``: the broker has them, and
        refusing new events for the sake of old ones would stop the gateway whenever the
        indexer is away."""
        async with self._ack_lock:
            held = sum(s.size for s in self._segments)
            before = self._indexed
            while (
                held + total > self._max_bytes
                and len(self._segments) > 1
                and self._segments[0].last <= self._acked
            ):
                segment = self._segments[0]
                self._indexed = max(self._indexed, segment.last)
                held -= segment.size
                self._segments.pop(0)
                _close_reader(segment)
                segment.path.unlink(missing_ok=True)
            if self._indexed != before:
                self.released_unindexed += self._indexed - before
                await self._persist(_INDEXED_FILE, self._indexed, [])

    def _persist_ack(self, offset: int, doomed: list[Path], name: str = _ACK_FILE) -> None:
        # Written before the segments go: a crash in between only leaves them for the
        # next open to trim. No fsync: a lost ack only means records are sent again.
        tmp = self._dir / (name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, b"%d\n" % offset)
        finally:
            os.close(fd)
        os.replace(tmp, self._dir / name)
        for path in doomed:
            path.unlink(missing_ok=True)

    async def close(self) -> None:
        async with self._lock, self._ack_lock:
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


def _read_ack(path: Path, missing: int = 0) -> int:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return missing
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
