"""The audit spool's on-disk format: frames, segments, the position files, and the small
file operations the spool is made of (gateway/audit/spool.py holds the spool itself).

On disk, in the spool's ``directory``:

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
* ``reserve``: preallocated space for the bookkeeping above when the disk is full
  (gateway/audit/spool_space.py); never holds records.

A frame is a header (``MAGIC``, offset, payload length, CRC-32 of the offset, length
and payload) followed by the payload; a segment is a file of consecutive frames named by
the first offset written to it.

Example: ``HEADER_SIZE + len(payload)`` is what one record takes on disk.
"""

from __future__ import annotations

import asyncio
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

from gateway.audit.spool_space import Reserve, is_out_of_space, write_replacing

__all__ = [
    "ACK_FILE",
    "COPY_CHUNK",
    "CRC",
    "HEADER",
    "HEADER_SIZE",
    "INDEXED_FILE",
    "INDEX_STRIDE",
    "MAGIC",
    "MAX_PAYLOAD",
    "OFFSET_LENGTH",
    "QUARANTINE",
    "READ_CHUNK",
    "SEGMENT_NAME",
    "Chunk",
    "NoRoomForCopy",
    "Segment",
    "SegmentScan",
    "SpoolCorruption",
    "SpoolFull",
    "SpoolRecovery",
    "check_frame",
    "close_reader",
    "copy_head",
    "corruption_error",
    "cut_bad_spans",
    "datasync",
    "drop_superseded",
    "frame_reason",
    "fsync_dir",
    "in_thread",
    "pwrite_all",
    "quarantine",
    "read_ack",
    "recover_segment",
    "resync",
    "segment_last",
    "settle",
    "unlink_all",
    "write_all",
    "write_without",
]

MAGIC = b"LGS1"
HEADER = struct.Struct(">4sQII")  # magic, offset, payload length, crc32
OFFSET_LENGTH = struct.Struct(">QI")  # the header fields the crc covers
CRC = struct.Struct(">I")
HEADER_SIZE = HEADER.size
MAX_PAYLOAD = 0xFFFFFFFF

# One index entry per this many bytes of segment: a read scans at most this far to get to
# its first record. That is 1,024 entries for a 64 MiB segment, whatever the record size.
INDEX_STRIDE = 64 * 1024
READ_CHUNK = 64 * 1024
COPY_CHUNK = 1 << 20

ACK_FILE = "acked"
INDEXED_FILE = "indexed"
QUARANTINE = "quarantine"
SEGMENT_NAME = re.compile(r"\d{20}\.seg")
INCOMPLETE = "incomplete"  # frame runs past the end of the file; becomes a reason later

if sys.platform == "linux":
    # Flushes the data and the file size, but not the mtime: one disk write fewer.
    datasync: Callable[[int], None] = os.fdatasync
else:
    datasync = os.fsync


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


def new_index() -> array[int]:
    return array("Q")


@dataclass(slots=True, eq=False)
class Segment:
    name: int  # the offset in the file name: the first offset ever written to it
    path: Path
    first: int = 0
    last: int = 0
    size: int = 0  # bytes of whole, durable frames; anything beyond is in flight
    count: int = 0
    last_at: int = 0  # byte position of the last frame (copied when the segment is reclaimed)
    # Sparse index: (offset, byte position) of one frame every INDEX_STRIDE bytes.
    index_offsets: array[int] = field(default_factory=new_index)
    index_positions: array[int] = field(default_factory=new_index)
    next_index_at: int = 0
    read_fd: int | None = None


@dataclass(slots=True, eq=False)
class Chunk:
    """The part of one append that goes into one segment."""

    segment: Segment
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


def segment_last(segment: Segment) -> int:
    return segment.last


@dataclass(slots=True)
class SegmentScan:
    segment: Segment | None  # None when nothing valid was left in it
    unacked: int
    last_payload: bytes | None
    corruptions: list[SpoolCorruption]


def check_frame(
    mm: mmap.mmap, pos: int, size: int, prev: int, floor: int
) -> tuple[int, int, str | None]:
    """(offset, payload length, None) for a valid frame at ``pos``, else a reason."""
    avail = size - pos
    if avail < HEADER_SIZE:
        head = mm[pos : pos + min(avail, len(MAGIC))]
        return 0, 0, INCOMPLETE if MAGIC.startswith(head) else "bad header"
    magic, offset, length, crc = HEADER.unpack_from(mm, pos)
    if magic != MAGIC:
        return offset, length, "bad header"
    if length > avail - HEADER_SIZE:
        return offset, length, INCOMPLETE
    body = pos + HEADER_SIZE
    if zlib.crc32(mm[body : body + length], zlib.crc32(mm[pos + 4 : body - 4])) != crc:
        return offset, length, "bad checksum"
    # Strictly increasing rather than exactly +1: recovery cuts bad spans out and leaves
    # the offsets of what follows as they are.
    if offset <= prev or offset < floor:
        return offset, length, "offset out of order"
    return offset, length, None


def resync(mm: mmap.mmap, start: int, size: int, prev: int, floor: int) -> int | None:
    """Where the next fully valid frame starts, if anywhere."""
    pos = mm.find(MAGIC, start)
    while pos != -1:
        if check_frame(mm, pos, size, prev, floor)[2] is None:
            return pos
        pos = mm.find(MAGIC, pos + 1)
    return None


def frame_reason(why: str, at_end: bool, newest: bool) -> str:
    if why != INCOMPLETE:
        return why
    if not at_end:
        return "bad length"  # a valid frame follows: the length field is wrong
    return "torn tail" if newest else "truncated segment"


def read_ack(path: Path, missing: int = 0) -> int:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return missing
    try:
        return max(0, int(text.strip()))
    except ValueError:
        return 0  # unreadable: send everything again rather than guess


async def settle(task: asyncio.Future[Any]) -> bool:
    """Wait for ``task`` to finish even if cancelled meanwhile; return whether we were."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError:
            cancelled = True
    return cancelled


def pwrite_all(fd: int, data: bytearray, pos: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, pos)
        if n <= 0:
            raise OSError(errno.EIO, "short write to the audit spool")
        view = view[n:]
        pos += n


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "short write to the audit spool")
        view = view[n:]


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a thread, waited for even when cancelled (it cannot be stopped
    half-way); then cancelled, or its result."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    cancelled = await settle(task)
    if cancelled:
        raise asyncio.CancelledError
    return task.result()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def close_reader(segment: Segment) -> None:
    if segment.read_fd is not None:
        os.close(segment.read_fd)
        segment.read_fd = None


def corruption_error(segment: Segment, pos: int) -> OSError:
    return OSError(errno.EIO, f"audit spool segment {segment.path.name} is corrupt at byte {pos}")


def cut_bad_spans(
    directory: Path, path: Path, segment: Segment, rewrite: Path | None, *, fsync: bool
) -> None:
    """Take the quarantined spans out of the segment file: delete a segment with no good
    record left, put its rewrite in its place, or cut off its torn tail."""
    # The bad bytes are in quarantine (and synced) before they leave the segment.
    if fsync:
        fsync_dir(directory / QUARANTINE)
        fsync_dir(directory)
    if not segment.count:
        path.unlink()
    elif rewrite is not None:
        os.replace(rewrite, path)
    else:
        os.truncate(path, segment.size)
    if fsync:
        fsync_dir(path.parent)


def quarantine(
    spool_dir: Path, segment: str, mm: mmap.mmap, start: int, end: int, *, fsync: bool
) -> Path:
    """Copy bytes ``start:end`` of a segment into the quarantine; return the copy's path."""
    directory = spool_dir / QUARANTINE
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
        for pos in range(start, end, COPY_CHUNK):
            write_all(fd, mm[pos : min(end, pos + COPY_CHUNK)])
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    return path


def write_without(
    path: Path, mm: mmap.mmap, spans: list[tuple[int, int, str]], *, fsync: bool
) -> None:
    """Write the segment in ``mm`` to ``path`` without the ``spans`` (start, end, why)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        pos = 0
        for start, end, _ in [*spans, (len(mm), len(mm), "")]:
            for at in range(pos, start, COPY_CHUNK):
                write_all(fd, mm[at : min(start, at + COPY_CHUNK)])
            pos = end
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


class NoRoomForCopy(OSError):
    """The chain head's copy found no room (the reserve spent too)."""

    def __init__(self, segment: Segment, frame: bytes) -> None:
        super().__init__(errno.ENOSPC, "no room for the chain head's copy")
        self.segment = segment
        self.frame = frame


def unlink_all(paths: list[Path]) -> None:
    """Delete ``paths`` (those already gone are no error)."""
    for path in paths:
        path.unlink(missing_ok=True)


def copy_head(directory: Path, old: Segment, *, fsync: bool, reserve: Reserve) -> Segment:
    """Copy the last frame of segment ``old`` (all acknowledged) into
    ``{last:020d}.seg``; return that segment. From here a crash leaves both files, and
    recovery deletes the old one. Raises ``NoRoomForCopy`` when the disk has no room for
    the copy, reserve and all.

    Example: ``copy_head(spool_dir, segments[-1], fsync=True, reserve=reserve)``."""
    fd = old.read_fd
    if fd is None:
        fd = old.read_fd = os.open(old.path, os.O_RDONLY | os.O_CLOEXEC)
    frame = os.pread(fd, old.size - old.last_at, old.last_at)
    if len(frame) != old.size - old.last_at:
        raise corruption_error(old, old.last_at)
    path = directory / f"{old.last:020d}.seg"
    segment = Segment(old.last, path, old.last, old.last, len(frame), 1, 0)
    segment.index_offsets.append(old.last)
    segment.index_positions.append(0)
    segment.next_index_at = INDEX_STRIDE
    try:
        write_replacing(path, frame, fsync=fsync, reserve=reserve)
    except OSError as exc:
        if is_out_of_space(exc):
            raise NoRoomForCopy(segment, frame) from exc
        raise
    return segment


def drop_superseded(
    directory: Path, old: Path, copy: Segment, frame: bytes | None, *, fsync: bool
) -> tuple[int, bool]:
    """Delete segment file ``old``, which ``copy`` supersedes; when ``frame`` is given
    (there was no room for the copy before), delete it first and then write the copy.
    Returns the copy's write fd and whether ``old`` is gone.

    Example: ``fd, gone = drop_superseded(spool_dir, old_path, copy, None, fsync=True)``."""
    if frame is not None:
        old.unlink()
        if fsync:
            fsync_dir(directory)
        write_replacing(copy.path, frame, fsync=fsync, reserve=None)
    fd = os.open(copy.path, os.O_WRONLY | os.O_CLOEXEC)
    deleted = True
    try:
        old.unlink(missing_ok=True)
    except OSError:
        deleted = False
    if fsync:
        fsync_dir(directory)
    return fd, deleted


def recover_segment(
    directory: Path, path: Path, name: int, prev: int, newest: bool, acked: int, *, fsync: bool
) -> SegmentScan:
    """Check every frame of segment file ``path`` (named ``name``, following offset
    ``prev``; ``newest``: the spool's last; records past ``acked`` are unacked): bad spans
    are quarantined and cut out, the good frames indexed.

    Example: ``scan = recover_segment(spool_dir, path, 1, 0, True, 0, fsync=True)``."""
    segment = Segment(name, path)
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
            offset, length, why = check_frame(mm, pos, size, prev, name)
            if why is None:
                kept = pos - removed  # its position once the bad spans are cut out
                if segment.count == 0:
                    segment.first = offset
                if kept >= segment.next_index_at:
                    segment.index_offsets.append(offset)
                    segment.index_positions.append(kept)
                    segment.next_index_at = kept + INDEX_STRIDE
                segment.last = prev = offset
                segment.last_at = kept
                segment.count += 1
                if offset > acked:
                    unacked += 1
                last_frame = (pos, length)
                pos += HEADER_SIZE + length
                continue
            resume = resync(mm, pos + 1, size, prev, name)
            end = size if resume is None else resume
            spans.append((pos, end, frame_reason(why, resume is None, newest)))
            removed += end - pos
            pos = end
        segment.size = size - removed
        if segment.count:
            start = last_frame[0] + HEADER_SIZE
            last_payload = mm[start : start + last_frame[1]]
        for start, end, reason in spans:
            quarantined = quarantine(directory, path.name, mm, start, end, fsync=fsync)
            corruptions.append(
                SpoolCorruption(path.name, start, end - start, str(quarantined), reason)
            )
        tail_only = len(spans) == 1 and spans[0][1] == size
        if spans and segment.count and not tail_only:
            rewrite = path.with_name(path.name + ".tmp")
            write_without(rewrite, mm, spans, fsync=fsync)
    if spans:
        cut_bad_spans(directory, path, segment, rewrite, fsync=fsync)
    return SegmentScan(segment if segment.count else None, unacked, last_payload, corruptions)
