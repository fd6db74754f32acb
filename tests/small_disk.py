"""A small tmpfs to fill, for the tests of a full spool disk.

Mounting needs root (and CAP_SYS_ADMIN): without it the test is skipped with the reason,
except under CI (`CI` set), where it fails, since the full-disk guarantees would then go
untested."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["fill_disk", "small_tmpfs"]


def _cannot(why: str) -> None:
    message = f"a small tmpfs for the full-disk test cannot be mounted: {why}"
    if os.environ.get("CI"):
        pytest.fail(message + " — CI requires it (run the tests as root)", pytrace=False)
    pytest.skip(message)


@contextmanager
def small_tmpfs(path: Path, size: str = "2m") -> Iterator[Path]:
    """``path`` with a fresh tmpfs of ``size`` mounted on it, unmounted afterwards."""
    if os.geteuid() != 0:
        _cannot("the tests do not run as root")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        _cannot(mounted.stderr.strip() or f"mount exited {mounted.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False)


def fill_disk(path: Path) -> int:
    """Write a file under ``path`` until the disk is full; return its size."""
    written = 0
    chunk = b"\0" * 4096
    with (path / "filler").open("wb", buffering=0) as f:
        try:
            while True:
                written += f.write(chunk) or 0
        except OSError:
            pass
    return written
