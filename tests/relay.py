"""A TCP relay that can cut a part (PostgreSQL, Redis) away from the processes that use
it and give it back on the same port; used by the fault tests (tests/fault_rig.py) and by
bench/redis_return.py. No pytest here, so that the benchmarks can import it."""

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

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = _free_port()
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
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

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


def _serve(listen_port: int, host: str, port: int) -> None:
    """`python -m tests.relay LISTEN_PORT HOST PORT`: the relay in a process of its own
    (no GIL shared with what it measures); SIGUSR1 cuts, SIGUSR2 restores."""
    import signal

    relay = Relay(host, port)
    relay.port = listen_port
    relay.restore()
    signal.signal(signal.SIGUSR1, lambda *_: relay.cut())
    signal.signal(signal.SIGUSR2, lambda *_: relay.restore())
    signal.signal(signal.SIGTERM, lambda *_: relay.close())
    print("relaying", flush=True)
    relay._thread.join()


if __name__ == "__main__":
    import sys

    _serve(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
