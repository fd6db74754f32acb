"""What client certificates cost a request, and what HTTPS costs a connection.

    .venv/bin/python -m bench.tls [--repeat 20000] [--handshakes 300]

- per request: reading the connection's certificate (`gateway.core.tls.peer_certificate`,
  parsed once per distinct certificate, then a cache hit) and looking up its pins;
  and parsing a certificate the first time (a cache miss);
- per connection: full TLS handshakes with the gateway's listener context (TLS 1.3,
  ECDHE P-256 certificates as the tests make them), with and without a client
  certificate, over loopback sockets in one process.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import tempfile
import time
from pathlib import Path

from gateway.core.tls import _parse, peer_certificate, server_context
from gateway.identity.credentials import digest
from tests.tls_rig import Pki


class _Transport:
    def __init__(self, obj: object) -> None:
        self.obj = obj

    def get_extra_info(self, name: str) -> object:
        return self.obj if name == "ssl_object" else None


class _SSLObject:
    def __init__(self, der: bytes) -> None:
        self.der = der

    def getpeercert(self, binary_form: bool = False) -> bytes:
        return self.der


def per_request(pki: Pki, n: int) -> None:
    cert = pki.issue("motcua")
    transport = _Transport(_SSLObject(cert.der))
    table = {digest(f"subject:{cert.subject}"): 1}
    peer_certificate(transport)  # warm
    t0 = time.perf_counter()
    for _ in range(n):
        peer = peer_certificate(transport)
        assert peer is not None
        found = any(digest(p) in table for p in peer.pins)
    hit = (time.perf_counter() - t0) / n
    assert found
    ders = [pki.issue(f"c{i}").der for i in range(min(n, 500))]
    t0 = time.perf_counter()
    for der in ders:
        _parse.__wrapped__(der)
    miss = (time.perf_counter() - t0) / len(ders)
    print(f"certificate read + pin lookup (cached): {hit * 1e6:7.2f} µs a request")
    print(f"certificate parsed (first time seen):   {miss * 1e6:7.2f} µs")


async def handshakes(pki: Pki, n: int, with_client_cert: bool) -> float:
    server = pki.issue("gateway", server=True)
    ctx = server_context(str(server.cert), str(server.key), str(pki.ca_file), "optional")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    listener = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)
    port = listener.sockets[0].getsockname()[1]
    client = pki.verify(pki.issue("motcua") if with_client_cert else None)
    t0 = time.perf_counter()
    for _ in range(n):
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        writer.write(b"x")
        writer.close()
    elapsed = time.perf_counter() - t0
    listener.close()
    await listener.wait_closed()
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20000)
    ap.add_argument("--handshakes", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        pki = Pki.make(Path(d))
        per_request(pki, args.repeat)
        for mutual in (False, True):
            rate = asyncio.run(handshakes(pki, args.handshakes, mutual))
            label = "with a client certificate" if mutual else "server certificate only"
            print(f"TLS handshakes, {label}: {rate:7.0f} a second (client and server, one core)")
    print(f"(OpenSSL {ssl.OPENSSL_VERSION})")


if __name__ == "__main__":
    main()
