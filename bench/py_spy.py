"""Reading py-spy: installing it into the venv when missing, and turning its collapsed
stacks (`--format raw`) into own and inclusive time per function, idle pool threads
left out.

Example::

    prof = read_profile(Path("profile.txt").read_text())
    print(prof.own.most_common(5))
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Profile", "py_spy", "read_profile"]

REPO = Path(__file__).resolve().parent.parent


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def py_spy() -> str:
    binary = Path(sys.executable).parent / "py-spy"
    if not binary.exists():
        say("installing py-spy into the venv (pip install py-spy)")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "py-spy"],
            check=True,
        )  # fmt: skip
    return str(binary)


_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
# Where idle pool threads wait for work: a sample there is not work (py-spy's idle
# detection misses these blocking queue reads).
_WAITS = (
    ("concurrent.futures.thread", "_worker", "work_queue.get(block=True)"),
    ("aiosqlite.core", "_connection_worker_thread", "tx.get()"),
)


def idle_sites() -> set[str]:
    """The py-spy frames (`func (path:line)`) of the waits above, in these versions."""
    sites = set()
    for module, func, needle in _WAITS:
        with contextlib.suppress(Exception):
            lines, start = inspect.getsourcelines(getattr(importlib.import_module(module), func))
            for i, text in enumerate(lines):
                if needle in text:
                    sites.add(f"{func} ({module.replace('.', '/')}.py:{start + i})")
    return sites


@dataclass
class Profile:
    total: int = 0
    idle: int = 0
    loop_thread: int = 0  # samples in the main (event loop) thread
    own: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)  # the project's functions


def read_profile(raw: str) -> Profile:
    """Own-time samples per function from py-spy's collapsed stacks (`--format raw`),
    idle pool threads left out."""
    idle = idle_sites()
    out = Profile()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if frames[-1] in idle:
            out.idle += int(count)
            continue
        names = [frame_name(f) for f in frames]
        out.own[names[-1]] += int(count)
        for name in set(names):
            if " (gateway/" in name or " (adapters/" in name:
                out.inclusive[name] += int(count)
        out.total += int(count)
        if not any(f.startswith("Thread._bootstrap ") for f in frames[:3]):
            out.loop_thread += int(count)
    return out


def frame_name(frame: str) -> str:
    m = _FRAME.match(frame)
    return f"{m['func']} ({short_path(m['file'])})" if m else frame


def short_path(path: str) -> str:
    path = re.sub(r"^.*/lib/python3\.\d+/(site-packages/)?", "", path)
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(REPO))
    return path
