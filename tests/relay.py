"""A TCP relay that can cut a part (PostgreSQL, Redis) away from the processes that use
it and give it back on the same port; used by the fault tests (tests/fault_rig.py), by
the cluster test (tests/cluster_rig.py: the machine's PostgreSQL and Redis listen on
127.0.0.1, which a network namespace cannot reach, so a relay in the root namespace
listens on the bridge address) and by bench/redis_return.py. Standard library only, no
pytest, so that it starts in tens of milliseconds and the benchmarks can import it.

    python -m tests.relay LISTEN=TARGET ...   each a host:port; prints `ready`;
                                             SIGUSR1 cuts, SIGUSR2 restores
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any

__all__ = ["Relay"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Relay:
    """A TCP relay on a fixed loopback port to `target` (PostgreSQL, Redis), run in a
    thread of its own so that it keeps relaying while the test's loop blocks. `cut()`
    closes the listener and every connection through it (the part is gone, as a crashed
    server or a broken network looks to the gateway); `restore()` listens again."""

    def __init__(self, host: str, port: int, *, listen: tuple[str, int] | None = None) -> None:
        self.target = (host, port)
        self.host, self.port = listen or ("127.0.0.1", _free_port())
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def restore(self) -> None:
        self._call(self._listen())

    def cut(self) -> None:
        self._call(self._cut())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._relay, self.host, self.port, reuse_address=True
        )

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()  # a reset, not a polite close
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, RuntimeError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str]) -> None:
    """`python -m tests.relay LISTEN=TARGET ...`: relays in a process of their own (no GIL
    shared with what they carry); `ready` once every listener is bound; SIGUSR1 cuts
    them, SIGUSR2 restores them, SIGTERM ends them."""
    import signal

    relays = []
    for arg in argv:
        listen, _, target = arg.partition("=")
        relay = Relay(*_address(target), listen=_address(listen))
        relay.restore()
        relays.append(relay)
    signal.signal(signal.SIGUSR1, lambda *_: [r.cut() for r in relays])
    signal.signal(signal.SIGUSR2, lambda *_: [r.restore() for r in relays])
    signal.signal(signal.SIGTERM, lambda *_: [r.close() for r in relays])
    print("ready", flush=True)
    for r in relays:
        r._thread.join()


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
