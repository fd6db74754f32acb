"""The national platform as a transparency-log witness (c2sp.org/tlog-witness).

Decree 278/2025 routes mandatory exchanges through the national orchestration platform,
which makes it the natural witness of each province's audit log: it cosigns a
province's checkpoint only if a consistency proof shows it extends the last one it
cosigned, so a province that rewrites its history cannot get a new cosignature::

    POST /witness/add-checkpoint          (text/plain)

    old 300
    <base64 proof hash>...

    lgsp.hanam.gov.vn/audit/gw-1
    320
    <base64 root>

    — lgsp.hanam.gov.vn/audit/gw-1 <base64 signature>

Answers: 200 with the cosignature line (`cosignature/v1`, Ed25519, type 0x04); 400 a
malformed body or an old size past the new; 403 no valid signature of a trusted log key;
404 an unknown log; 409 a stale old size (the body is the size it holds,
`text/x.tlog.size`) or the same size with another root; 422 a proof that does not
verify. `GET /witness/key` gives its verifier key. The state is kept in memory: this is
a test double. Written from the specifications, sharing no code with the gateway.
"""

import asyncio
import base64
import binascii
import hashlib
import struct
import time
from dataclasses import dataclass, field

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["WITNESS", "NationalWitness", "setup"]

NAME = "ndxp.gov.vn/witness"
SIZE_TYPE = "text/x.tlog.size"


def _id(name: str, kind: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + public).digest()[:4]


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def consistent(m: int, n: int, r1: bytes, r2: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2, for 0 < m < n."""
    if not proof:
        return False
    path = [r1, *proof] if m & (m - 1) == 0 else list(proof)
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == r1 and sr == r2


@dataclass
class _Request:
    old: int
    proof: list[bytes]
    text: str  # the checkpoint's body, as signed
    origin: str
    size: int
    root: bytes
    signatures: list[tuple[str, bytes]]  # (key name, key id || signature)


def _parse(body: str) -> _Request:
    head, sep, note = body.partition("\n\n")
    if not sep or not note.endswith("\n"):
        raise ValueError("old size and proof, a blank line, then the checkpoint")
    first, *lines = head.split("\n")
    if not first.startswith("old ") or not first[4:].isdigit() or len(lines) > 63:
        raise ValueError("the first line is 'old <size>', then at most 63 proof lines")
    text, sep, sigs = note.rpartition("\n\n")
    body_lines = (text + "\n").split("\n")
    if not sep or len(body_lines) < 4:
        raise ValueError("a checkpoint is origin, size and root, a blank line, signatures")
    origin, size, root = body_lines[:3]
    signatures = []
    for line in sigs.splitlines():
        if not line.startswith("\u2014 "):
            raise ValueError("a signature line starts with an em dash")
        name, _, blob = line[2:].partition(" ")
        signatures.append((name, base64.b64decode(blob, validate=True)))
    digest = base64.b64decode(root, validate=True)
    if not size.isdigit() or len(digest) != 32:
        raise ValueError("a checkpoint's size is decimal and its root 32 bytes")
    proof = [base64.b64decode(x, validate=True) for x in lines]
    return _Request(int(first[4:]), proof, text + "\n", origin, int(size), digest, signatures)


@dataclass
class NationalWitness:
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    name: str = NAME
    logs: dict[str, Ed25519PublicKey] = field(default_factory=dict)  # origin -> key
    seen: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # origin -> size, root
    refusals: list[tuple[str, int]] = field(default_factory=list)  # kept: proof of misbehaviour
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def vkey(self) -> str:
        public = _raw(self.key.public_key())
        material = base64.b64encode(b"\x04" + public).decode()
        return f"{self.name}+{_id(self.name, 4, public).hex()}+{material}"

    def trust(self, vkey: str) -> None:
        """Witness the log of this verifier key (`name+hex id+base64(0x01 || key)`)."""
        name, _, rest = vkey.strip().partition("+")
        raw = base64.b64decode(rest.partition("+")[2])
        if raw[:1] != b"\x01" or _id(name, 1, raw[1:]).hex() != rest.partition("+")[0]:
            raise ValueError("not an Ed25519 log verifier key")
        self.logs[name] = Ed25519PublicKey.from_public_bytes(raw[1:])

    def _signed(self, req: _Request, key: Ed25519PublicKey) -> bool:
        want = _id(req.origin, 1, _raw(key))
        for name, blob in req.signatures:
            if name == req.origin and blob[:4] == want:
                try:
                    key.verify(blob[4:], req.text.encode())
                    return True
                except InvalidSignature:
                    return False
        return False

    def _decide(self, req: _Request) -> tuple[int, str, str]:
        size, root = self.seen.get(req.origin, (0, b""))
        if req.old != size:
            return 409, f"{size}\n", SIZE_TYPE
        if req.old == req.size and req.old and root != req.root:
            return 409, "same size, another root: a fork\n", "text/plain"
        if 0 < req.old < req.size and not consistent(req.old, req.size, root, req.root, req.proof):
            return 422, f"not consistent with the checkpoint at {req.old}\n", "text/plain"
        self.seen[req.origin] = (req.size, req.root)
        stamp = int(time.time())
        message = f"cosignature/v1\ntime {stamp}\n{req.text}".encode()
        signature = struct.pack(">Q", stamp) + self.key.sign(message)
        public = _raw(self.key.public_key())
        blob = base64.b64encode(_id(self.name, 4, public) + signature).decode()
        return 200, f"\u2014 {self.name} {blob}\n", "text/plain"

    async def add_checkpoint(self, request: web.Request) -> web.Response:
        try:
            req = _parse((await request.read()).decode())
        except (ValueError, UnicodeDecodeError, binascii.Error) as e:
            return web.Response(status=400, text=f"{e}\n")
        key = self.logs.get(req.origin)
        if key is None:
            return web.Response(status=404, text=f"unknown log {req.origin}\n")
        if not self._signed(req, key):
            return web.Response(status=403, text="no valid signature of the log's key\n")
        if req.old > req.size:
            return web.Response(status=400, text="old size past the checkpoint's\n")
        async with self.lock:  # the check and the update are one step
            status, text, media = self._decide(req)
        if status != 200:
            self.refusals.append((req.origin, status))
        return web.Response(status=status, text=text, content_type=media)

    async def key_text(self, request: web.Request) -> web.Response:
        return web.Response(text=self.vkey() + "\n")


WITNESS: web.AppKey[NationalWitness] = web.AppKey("witness", NationalWitness)


def setup(app: web.Application, logs: list[str] | None = None) -> NationalWitness:
    witness = NationalWitness()
    for vkey in logs or []:
        witness.trust(vkey)
    app[WITNESS] = witness
    app.router.add_post("/witness/add-checkpoint", witness.add_checkpoint)
    app.router.add_get("/witness/key", witness.key_text)
    return witness
