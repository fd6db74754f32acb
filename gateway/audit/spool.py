"""Durable write-ahead spool for audit records.

An audit event counts as logged once it is in this spool: appended, checksummed and
fsync'd. A sender reads records, ships them on (Kafka) and acks them; acked segments are
then deleted.

On disk: frames in segment files, the ``acked`` and ``indexed`` positions, a quarantine
and a reserve (gateway/audit/spool_format.py describes each).

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
import os
import zlib
from pathlib import Path

from gateway.audit.spool_format import (
    ACK_FILE,
    CRC,
    HEADER,
    HEADER_SIZE,
    INDEX_STRIDE,
    INDEXED_FILE,
    MAGIC,
    MAX_PAYLOAD,
    OFFSET_LENGTH,
    READ_CHUNK,
    SEGMENT_NAME,
    Chunk,
    NoRoomForCopy,
    Segment,
    SpoolCorruption,
    SpoolFull,
    SpoolRecovery,
    close_reader,
    copy_head,
    corruption_error,
    datasync,
    drop_superseded,
    fsync_dir,
    in_thread,
    pwrite_all,
    read_ack,
    recover_segment,
    segment_last,
    settle,
    unlink_all,
)
from gateway.audit.spool_space import (
    Reserve,
    SpoolDiskFull,
    free_bytes,
    is_out_of_space,
    persist_position,
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
        self._reserve = Reserve(self._dir, reserve_bytes)
        # A fully acked newest segment this big is reclaimed even when the disk has room.
        self._compact_bytes = segment_bytes // 4 if compact_bytes is None else compact_bytes
        self._acked_durable = 0  # the ack position the acked file holds
        self._keep = keep_until_indexed
        self._indexed = 0  # with _keep: up to here the store has the records
        self.released_unindexed = 0  # records dropped for room before the store had them
        self._doomed: list[Path] = []  # acked segments whose deletion failed: tried again
        self._space_need: int | None = None  # bytes the last append found no room for
        self._segments: list[Segment] = []
        self._write_fd: int | None = None  # the newest segment's
        self._end = 0
        self._next = 1
        self._acked = 0
        # (last offset returned, its segment, byte position after it): the sender's next
        # read normally starts right there, without an index look-up.
        self._cursor: tuple[int, Segment, int] | None = None
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
            cancelled = await settle(task)
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
        acked = read_ack(directory / ACK_FILE)

        files = sorted(
            (int(p.name[:20]), p) for p in directory.iterdir() if SEGMENT_NAME.fullmatch(p.name)
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
            newest = i == len(nonempty) - 1
            scan = recover_segment(self._dir, path, name, prev, newest, acked, fsync=self._fsync)
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
        self._indexed = min(read_ack(directory / INDEXED_FILE, missing=acked), self._acked)
        # Written at once: a missing file means "as acked" (a spool from before it existed),
        # which must not be what a new spool that has released nothing yet reads back.
        if self._keep:
            with contextlib.suppress(OSError):  # a full disk: the reclaim below makes room
                self._persist_ack(self._indexed, [], False, INDEXED_FILE)
        else:
            (directory / INDEXED_FILE).unlink(missing_ok=True)
        while len(self._segments) > 1 and self._segments[0].last <= self._floor():
            self._segments.pop(0).path.unlink(missing_ok=True)  # trim an interrupted ack
        if self._segments:
            flags = os.O_WRONLY | os.O_CLOEXEC
            self._write_fd = os.open(self._segments[-1].path, flags)
        if self._fsync:
            fsync_dir(directory)
        self._reclaim_at_open()
        return SpoolRecovery(records, unacked, last_payload, corruptions)

    def _reclaim_at_open(self) -> None:
        """A full disk at start is not fatal: reclaiming the newest segment may free it."""
        ack_file = self._dir / ACK_FILE
        if not ack_file.exists():
            # Its block exists from now on, for an ack written in place on a full disk.
            with contextlib.suppress(OSError):
                write_replacing(ack_file, b"0\n", fsync=False, reserve=None)
        if not self._compactable(full=not self._reserve.hold()):
            return
        try:
            copy, frame = self._copy_head(), None
        except NoRoomForCopy as tight:
            copy, frame = tight.segment, tight.frame
        self._release_newest()
        self._adopt(copy, self._drop_newest(copy, frame))

    # -- append ------------------------------------------------------------------------

    async def append(self, payloads: list[bytes]) -> int:
        """Make ``payloads`` durable as consecutive records; return the last one's offset.

        An empty list appends nothing and returns ``end``. Raises ``SpoolFull`` past
        ``max_bytes``, ``SpoolDiskFull`` when the disk has no room even after reclaiming
        what the broker acknowledged."""
        if self._keep and payloads:
            # Before the append lock: the ack lock is always taken first.
            await self._make_room(sum(HEADER_SIZE + len(p) for p in payloads))
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
        cancelled = await settle(task)
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

    def _plan(self, payloads: list[bytes]) -> tuple[list[Chunk], int]:
        """Lay the frames out over the current segment and as many new ones as needed."""
        chunks: list[Chunk] = []
        chunk: Chunk | None = None
        if self._segments:
            current = self._segments[-1]
            chunk = Chunk(current, False, current.size, next_index_at=current.next_index_at)
        offset = self._next
        total = 0
        pack_ol, pack_crc, crc32 = OFFSET_LENGTH.pack, CRC.pack, zlib.crc32
        for payload in payloads:
            length = len(payload)
            if length > MAX_PAYLOAD:
                raise ValueError(f"a record of {length} bytes does not fit a frame")
            frame = HEADER_SIZE + length
            pos = 0 if chunk is None else chunk.start + len(chunk.data)
            if chunk is None or (pos > 0 and pos + frame > self._segment_bytes):
                path = self._dir / f"{offset:020d}.seg"
                chunk = Chunk(Segment(offset, path), True, 0)
                pos = 0
            if not chunk.count:
                chunks.append(chunk)
                chunk.first = offset
            if pos >= chunk.next_index_at:
                chunk.index_offsets.append(offset)
                chunk.index_positions.append(pos)
                chunk.next_index_at = pos + INDEX_STRIDE
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

    def _write(self, chunks: list[Chunk]) -> list[int]:
        """One write and one fsync per segment touched. Returns the fds of new segments."""
        opened: list[int] = []
        done: list[Chunk] = []
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
                pwrite_all(chunk.fd, chunk.data, chunk.start)
                if self._fsync:
                    datasync(chunk.fd)
            if opened and self._fsync:
                fsync_dir(self._dir)  # the new segments' names must survive a crash too
        except BaseException:
            self._roll_back(done, opened)
            raise
        return opened

    def _roll_back(self, done: list[Chunk], opened: list[int]) -> None:
        for chunk in done:
            if chunk.new:
                chunk.segment.path.unlink(missing_ok=True)
            else:
                try:
                    os.ftruncate(chunk.fd, chunk.start)
                    if self._fsync:
                        datasync(chunk.fd)
                except OSError:
                    # Left as it is, the tail is overwritten by the next append, or cut
                    # (and reported) by recovery.
                    pass
        for fd in opened:
            os.close(fd)

    def _commit(self, chunks: list[Chunk], opened: list[int]) -> None:
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
        i = bisect.bisect_right(segments, after, key=segment_last)
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

    def _start_position(self, segment: Segment, after: int) -> int:
        cursor = self._cursor
        if cursor is not None and cursor[0] == after and cursor[1] is segment:
            return cursor[2]
        # The last indexed frame at or before the first wanted one.
        i = bisect.bisect_right(segment.index_offsets, after + 1) - 1
        return segment.index_positions[i] if i >= 0 else 0

    def _read_segment(
        self,
        segment: Segment,
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
                buf = os.pread(fd, min(READ_CHUNK, limit - pos), pos)
                base, rel = pos, 0
                if len(buf) < HEADER_SIZE:
                    raise corruption_error(segment, pos)
            magic, offset, length, crc = HEADER.unpack_from(buf, rel)
            if magic != MAGIC:
                raise corruption_error(segment, pos)
            body = rel + HEADER_SIZE
            if body + length > len(buf):
                buf = os.pread(fd, min(max(READ_CHUNK, HEADER_SIZE + length), limit - pos), pos)
                base, rel, body = pos, 0, HEADER_SIZE
                if len(buf) < body + length:
                    raise corruption_error(segment, pos)
            if offset > after:
                if len(out) >= max_records or (out and total + length > max_bytes):
                    return pos, total, True
                payload = buf[body : body + length]
                if zlib.crc32(payload, zlib.crc32(buf[rel + 4 : body - 4])) != crc:
                    raise corruption_error(segment, pos)
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
            await self._persist(ACK_FILE, offset, self._trim())
            self._acked_durable = offset
            await self._reclaim_if_due()

    async def _reclaim_if_due(self) -> None:
        """Reclaim the newest segment when all of it is past the floor and it is worth
        it (the caller holds the ack lock)."""
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
                await in_thread(unlink_all, doomed)
            except OSError:
                self._doomed.extend(doomed)
            try:
                if not self._reserve.held:
                    await in_thread(self._reserve.hold)
                return await self._reclaim_newest(full=True)
            except OSError:
                return False

    def _trim(self) -> list[Path]:
        """Take the segments below the floor out of the spool; return their files, and
        those whose deletion failed before (tried again)."""
        doomed, self._doomed = self._doomed, []
        # The newest segment stays here: appends go there (it is reclaimed instead).
        while len(self._segments) > 1 and self._segments[0].last <= self._floor():
            segment = self._segments.pop(0)
            close_reader(segment)
            doomed.append(segment.path)
        return doomed

    async def _persist(self, name: str, offset: int, doomed: list[Path]) -> None:
        """Write position file ``name`` (the caller holds the ack lock), then delete
        ``doomed``. On a full disk the reserve gives the file room; no append runs
        meanwhile, or it could take the space released."""
        try:
            await in_thread(self._persist_ack, offset, doomed, False, name)
        except OSError as exc:
            if not is_out_of_space(exc):
                self._doomed = doomed
                raise
            async with self._lock:
                try:
                    await in_thread(self._persist_ack, offset, doomed, True, name)
                except OSError:
                    self._doomed = doomed
                    raise

    async def release(self, offset: int) -> None:
        """Everything up to ``offset`` is in the store: the spool need not keep it."""
        self._check_open()
        async with self._ack_lock:
            offset = min(offset, self._acked)
            if not self._keep or offset <= self._indexed:
                return
            self._indexed = offset
            await self._persist(INDEXED_FILE, offset, self._trim())
            await self._reclaim_if_due()

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
            await self._persist(ACK_FILE, offset, [])
            self._acked_durable = min(self._acked_durable, offset)
            return offset

    async def _make_room(self, total: int) -> None:
        """Drop the oldest acknowledged segments the store has not confirmed while the
        spool's files would otherwise exceed ``max_bytes``: the broker has them, and
        refusing new events for the sake of old ones would stop the gateway whenever the
        indexer is away."""
        async with self._ack_lock:
            held = sum(s.size for s in self._segments)
            before = self._indexed
            doomed: list[Path] = []
            while (
                held + total > self._max_bytes
                and len(self._segments) > 1
                and self._segments[0].last <= self._acked
            ):
                segment = self._segments.pop(0)
                self._indexed = max(self._indexed, segment.last)
                held -= segment.size
                close_reader(segment)
                doomed.append(segment.path)
            if self._indexed != before:
                self.released_unindexed += self._indexed - before
                await self._persist(INDEXED_FILE, self._indexed, doomed)

    def _persist_ack(
        self, offset: int, doomed: list[Path], use_reserve: bool, name: str = ACK_FILE
    ) -> None:
        # Written before the segments go: a crash in between only leaves them for the
        # next open to trim. No fsync: a lost position only means records are sent again
        # (or kept longer).
        persist_position(self._dir / name, offset, self._reserve if use_reserve else None)
        unlink_all(doomed)
        if use_reserve:
            self._reserve.hold()  # in the space the deletions freed, if they did

    # -- reclaiming the newest segment -------------------------------------------------

    def _compactable(self, *, full: bool) -> bool:
        """Whether the newest segment is all acked (durably), in the store too when the
        spool keeps records until then, and worth reclaiming: grown
        past ``compact_bytes``, or any size when the disk is ``full``."""
        if not self._segments:
            return False
        newest = self._segments[-1]
        if newest.count < 2 or newest.last > min(self._acked_durable, self._floor()):
            return False  # a single frame is already as small as the chain head's copy
        return full or newest.size >= self._compact_bytes

    async def _reclaim_newest(self, *, full: bool) -> bool:
        """Replace the acked newest segment by a copy of its last frame (the caller holds
        the append lock); return whether it was."""
        if not self._compactable(full=full):
            return False
        old = self._segments[-1]
        copying = asyncio.ensure_future(asyncio.to_thread(self._copy_head))
        cancelled = await settle(copying)
        error = copying.exception()
        # No room even for the copy, reserve and all (something else filled the disk):
        # the old segment, all acked, goes first and the copy is written in the space
        # that frees. Only a crash in between loses the head (then read from the store).
        if error is not None and not isinstance(error, NoRoomForCopy):
            if cancelled:
                raise asyncio.CancelledError
            raise error  # nothing changed (a stray copy is replaced later)
        copy = error.segment if isinstance(error, NoRoomForCopy) else copying.result()
        frame = error.frame if isinstance(error, NoRoomForCopy) else None
        self._release_newest()  # its blocks are freed only once nothing holds it open
        dropping = asyncio.ensure_future(asyncio.to_thread(self._drop_newest, copy, frame))
        cancelled |= await settle(dropping)
        if dropping.exception() is not None and old.path.exists():
            self._write_fd = os.open(old.path, os.O_WRONLY | os.O_CLOEXEC)  # go on in it
        elif dropping.exception() is None:
            self._adopt(copy, dropping.result())
        if cancelled:
            raise asyncio.CancelledError
        dropping.result()
        return True

    def _copy_head(self) -> Segment:
        """On disk, the newest segment's last frame into a segment of its own (see
        ``copy_head``)."""
        if self._fsync:
            # The copy supersedes the segment only under an ack that survives a crash.
            sync_path(self._dir / ACK_FILE)
        return copy_head(self._dir, self._segments[-1], fsync=self._fsync, reserve=self._reserve)

    def _release_newest(self) -> None:
        close_reader(self._segments[-1])
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        self._cursor = None

    def _drop_newest(self, copy: Segment, frame: bytes | None) -> int:
        """Delete the segment the copy supersedes (see ``drop_superseded``), take the
        reserve back in the space that freed; returns the copy's write fd."""
        old = self._segments[-1].path
        fd, deleted = drop_superseded(self._dir, old, copy, frame, fsync=self._fsync)
        if not deleted:
            self._doomed.append(old)  # tried again at the next ack; recovery deletes it too
        self._reserve.hold()
        return fd

    def _adopt(self, segment: Segment, write_fd: int) -> None:
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
                close_reader(segment)
            if self._write_fd is not None:
                os.close(self._write_fd)
                self._write_fd = None
            self._cursor = None
        self._wake()
