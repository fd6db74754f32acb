"""Disk space for the audit spool: what a full disk looks like, and the reserve that lets
the spool's own bookkeeping go on when the disk is full.

The spool frees space by deleting acknowledged segments; to get there it must still
write a few small files (the ``acked`` file, the copy of the chain head when the newest
segment is reclaimed). On a full disk those writes fail too, and without them nothing is
ever freed. So the spool holds a ``reserve`` file, preallocated when there is room: a
bookkeeping write that meets a full disk releases it and tries again, and the reserve is
taken back once space has been reclaimed. Records are never written into it.

``posix_fallocate`` allocates real blocks on ext4, XFS and tmpfs (glibc writes zeros
where the file system cannot allocate). On copy-on-write file systems (btrfs, ZFS) an
overwrite needs new blocks anyway, so the reserve is weaker there.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = [
    "RESERVE_FILE",
    "Reserve",
    "SpoolDiskFull",
    "free_bytes",
    "is_out_of_space",
    "overwrite_in_place",
    "persist_position",
    "sync_path",
    "write_replacing",
]

RESERVE_FILE = "reserve"
_OUT_OF_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
# posix_fallocate is not offered (some libcs, some file systems): zeros are written instead.
_NO_FALLOCATE = frozenset({errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS})


class SpoolDiskFull(OSError):
    """The spool's disk has no room for the records: the cause is the disk, not the
    broker. An ``OSError`` with ``errno.ENOSPC``, so callers that handle disk errors as
    such still do."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return str(self.strerror)


def is_out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` means the disk (or the user's quota) is full.

    Example::

        >>> is_out_of_space(OSError(errno.ENOSPC, "No space left on device"))
        True
    """
    return isinstance(exc, OSError) and exc.errno in _OUT_OF_SPACE


def free_bytes(directory: Path) -> int:
    """Bytes this process can still write under ``directory``.

    Root may use the blocks a file system keeps back for it (``f_bfree``); anyone else
    only ``f_bavail``. Example: ``free_bytes(Path("/var/spool/lgsp"))``."""
    st = os.statvfs(directory)
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return int(blocks * st.f_frsize)


class Reserve:
    """A preallocated file of ``size`` bytes in ``directory``, released to make room for
    bookkeeping on a full disk and taken back afterwards.

    Example::

        reserve = Reserve(spool_dir, 256 * 1024)
        reserve.hold()  # False if the disk has no room for it now
        ...
        reserve.release()  # its blocks are free for the next write
    """

    def __init__(self, directory: Path, size: int) -> None:
        self.path = directory / RESERVE_FILE
        self.size = size

    @property
    def held(self) -> bool:
        try:
            return self.size == 0 or self.path.stat().st_size >= self.size
        except FileNotFoundError:
            return False

    def hold(self) -> bool:
        """Allocate the reserve if it is not there yet; return whether it is held. A full
        disk is not an error (it is tried again later); anything else is raised."""
        if self.held:
            return True
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if is_out_of_space(exc):
                return False
            raise
        try:
            _allocate(fd, self.size)
        except OSError as exc:
            os.close(fd)
            if not is_out_of_space(exc):
                raise
            self.path.unlink(missing_ok=True)  # a part-allocated reserve would hold blocks
            return False
        os.close(fd)
        return True

    def release(self) -> bool:
        """Free the reserve's blocks; return whether there was one to free."""
        if self.size == 0:
            return False
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True


def _allocate(fd: int, size: int) -> None:
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in _NO_FALLOCATE:
            raise
        for pos in range(0, size, 65536):
            os.pwrite(fd, bytes(min(65536, size - pos)), pos)


def write_replacing(path: Path, data: bytes, *, fsync: bool, reserve: Reserve | None) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed over it, so a reader
    sees the old content or the new, never a part. On a full disk, ``reserve`` (if given
    and held) is released and the write tried once more.

    Example: ``write_replacing(spool_dir / "acked", b"42\\n", fsync=False, reserve=None)``."""
    try:
        _write_then_rename(path, data, fsync)
    except OSError as exc:
        if reserve is None or not is_out_of_space(exc) or not reserve.release():
            raise
        _write_then_rename(path, data, fsync)


def _write_then_rename(path: Path, data: bytes, fsync: bool) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a part-written file would hold blocks
        raise
    if fsync:
        sync_path(path.parent)


def overwrite_in_place(path: Path, data: bytes) -> None:
    """Write ``data`` over the start of the existing file ``path``: the last resort for the
    ``acked`` file on a disk with no room left and no reserve, since it takes no new
    block. A shorter ``data`` (a position taken back) is padded with spaces, since the
    positions are read stripped; a torn write is as likely as a torn sector.

    Example: ``overwrite_in_place(spool_dir / "acked", b"43\n")``."""
    size = path.stat().st_size
    if len(data) < size:
        data = data.rstrip(b"\n").ljust(size - 1) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        view = memoryview(data)
        pos = 0
        while view:
            n = os.pwrite(fd, view, pos)
            view, pos = view[n:], pos + n
    finally:
        os.close(fd)


def sync_path(path: Path) -> None:
    """fsync a file or a directory by its path."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def persist_position(path: Path, offset: int, reserve: Reserve | None) -> None:
    """Write a spool position file (``acked``, ``indexed``): replaced whole; on a full
    disk with ``reserve`` given, with its room, and with no room and no reserve at all
    (something else took it), overwritten in place, which needs no new block.

    Example: ``persist_position(spool_dir / "acked", 42, reserve=None)``."""
    data = b"%d\n" % offset
    try:
        write_replacing(path, data, fsync=False, reserve=reserve)
    except OSError as exc:
        if not (reserve is not None and is_out_of_space(exc) and path.exists()):
            raise
        overwrite_in_place(path, data)
