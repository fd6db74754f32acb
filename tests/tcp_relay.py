"""A small TCP relay: `python -m tests.tcp_relay LISTEN=TARGET ...`, each a `host:port`.

tests/test_cluster.py runs the gateway's hosts in network namespaces, which reach the
machine's root namespace only through a bridge address; the machine's PostgreSQL and
Redis listen on 127.0.0.1, which a namespace cannot reach (its loopback is its own).
This relay, in the root namespace, listens on the bridge address and copies bytes both
ways to the real server, so the hosts see "PostgreSQL at 10.213.x.1:5432" as they would
see a database host. It prints `ready` once every listener is bound, and runs until
killed. Standard library only, so it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

__all__ = ["main"]

_CHUNK = 1 << 16


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(_CHUNK):
            dst.write(data)
            await dst.drain()
    except OSError:
        pass


async def _serve_one(
    target: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        up_reader, up_writer = await asyncio.open_connection(*target)
    except OSError:
        writer.close()
        return
    try:
        # Either side ending ends the pair: PostgreSQL and Redis clients never half-close.
        _, pending = await asyncio.wait(
            [
                asyncio.ensure_future(_pipe(reader, up_writer)),
                asyncio.ensure_future(_pipe(up_reader, writer)),
            ],
            return_when=asyncio.FIRST_COMPLETED,
        )
        for task in pending:
            task.cancel()
    finally:
        for w in (writer, up_writer):
            with contextlib.suppress(OSError):
                w.close()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def _run(pairs: list[tuple[tuple[str, int], tuple[str, int]]]) -> None:
    servers = []
    for listen, target in pairs:

        async def handle(
            r: asyncio.StreamReader, w: asyncio.StreamWriter, target: tuple[str, int] = target
        ) -> None:
            await _serve_one(target, r, w)

        servers.append(await asyncio.start_server(handle, *listen, reuse_address=True))
    print("ready", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str]) -> None:
    pairs = []
    for arg in argv:
        listen, _, target = arg.partition("=")
        pairs.append((_address(listen), _address(target)))
    asyncio.run(_run(pairs))


if __name__ == "__main__":
    main(sys.argv[1:])
