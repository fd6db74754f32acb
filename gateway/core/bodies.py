"""Request bodies read within a limit on the bytes *after* decoding, counted while reading.

The gateway's HTTP server does not inflate bodies itself (aiohttp's `auto_decompress` is
off, gateway/edge/protocol.py): were it to, a 59 KB gzip body would be 60 MiB in memory
before any limit is looked at. Here a compressed body is inflated chunk by chunk, each
step producing at most what is left under the limit, so a compression bomb costs at most
`limit` bytes of memory and stops there.

`gzip` (and its alias `x-gzip`) and `deflate` (zlib-wrapped, or raw as some clients send
it) are understood; any other coding, or a stack of codings, is refused, since a body the
gateway cannot decode is a body whose size it cannot bound.

Example:
    >>> body = await read_body(request.content, request.headers.get("Content-Encoding"),
    ...                        limit=64 * 1024, decode=True)
    >>> body.data          # what the service reads: inflated
    >>> body.received      # what came on the wire: forwarded as it is by a pass-through
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass

from aiohttp import StreamReader

__all__ = [
    "DECODABLE",
    "Body",
    "BodyTooLarge",
    "CorruptEncoding",
    "UnsupportedEncoding",
    "read_body",
]

# Content codings the gateway can inflate, and so bound (RFC 9110 §8.4.1).
DECODABLE: tuple[str, ...] = ("gzip", "deflate")
_ALIASES = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}
_CHUNK = 64 * 1024


class BodyTooLarge(Exception):
    """The body, decoded, would be longer than the limit."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        super().__init__(f"the body exceeds {limit} bytes")
        self.limit = limit
        self.declared = declared


class UnsupportedEncoding(Exception):
    """A content coding the gateway does not decode (the answer is 415)."""

    def __init__(self, coding: str) -> None:
        super().__init__(coding)
        self.coding = coding


class CorruptEncoding(Exception):
    """The body is not what its Content-Encoding says (truncated or not compressed)."""

    def __init__(self, coding: str, reason: str) -> None:
        super().__init__(f"{coding}: {reason}")
        self.coding = coding
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Body:
    received: bytes  # as it came, still encoded
    data: bytes  # decoded (the same object as `received` without a content coding);
    # empty when read with decode=False
    coding: str | None  # "gzip", "deflate" or None
    size: int  # of the decoded body
    sha256: str  # of the decoded body: the message, however it travelled


def coding_of(header: str | None) -> str | None:
    """The one content coding `header` names (None for none or identity)."""
    if header is None:
        return None
    codings = [c.strip().lower() for c in header.split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return None
    if len(codings) > 1:
        raise UnsupportedEncoding(header.strip())
    coding = _ALIASES.get(codings[0])
    if coding is None:
        raise UnsupportedEncoding(codings[0])
    return coding


async def read_body(
    stream: StreamReader,
    content_encoding: str | None,
    *,
    limit: int,
    decode: bool,
    content_length: int | None = None,
) -> Body:
    """Read the whole body, at most `limit` bytes after decoding.

    Parameters:
        stream: the request's payload (aiohttp `request.content`), not inflated.
        content_encoding: the request's Content-Encoding header, if any.
        limit: the most bytes the decoded body may have (and the body as received).
        decode: keep the decoded bytes (a service that reads its messages); when False
            the body is still inflated to count it, and the output dropped.
        content_length: the declared length, refused at once when over `limit`.

    Returns: the body as received and as decoded.

    Raises: BodyTooLarge, UnsupportedEncoding, CorruptEncoding.
    """
    coding = coding_of(content_encoding)
    if content_length is not None and content_length > limit:
        raise BodyTooLarge(limit, content_length)
    inflater = _Inflater(coding, limit, keep=decode) if coding is not None else None
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await stream.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit, content_length)
        chunks.append(chunk)
        if inflater is not None:
            inflater.feed(chunk)
    received = b"".join(chunks)
    if inflater is None:
        return Body(received, received, None, len(received), hashlib.sha256(received).hexdigest())
    data = inflater.finish()
    return Body(received, data, coding, inflater.size, inflater.digest.hexdigest())


class _Inflater:
    def __init__(self, coding: str, limit: int, *, keep: bool) -> None:
        self.coding = coding
        self.limit = limit
        self.keep = keep
        self.size = 0
        self.out: list[bytes] = []
        self.digest = hashlib.sha256()
        self._z: zlib._Decompress | None = None  # made on the first bytes (deflate sniffs)
        self._ended = False

    def _new(self, first: bytes) -> zlib._Decompress:
        if self.coding == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # RFC 9110 "deflate" is the zlib format; some clients send raw deflate instead.
        zlib_header = (
            len(first) >= 2 and (first[0] & 0x0F) == 8 and ((first[0] << 8) | first[1]) % 31 == 0
        )
        return zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)

    def feed(self, data: bytes) -> None:
        while data:
            if self._z is None or self._ended:
                if self._ended and self.coding != "gzip":
                    raise CorruptEncoding(self.coding, "bytes after the end of the stream")
                self._z = self._new(data)
                self._ended = False
            try:
                # Never more than what is left under the limit (plus one byte to tell).
                out = self._z.decompress(data, self.limit - self.size + 1)
            except zlib.error as e:
                raise CorruptEncoding(self.coding, str(e)) from None
            self._count(out)
            if self._z.eof:
                # A gzip body may hold several members one after the other.
                self._ended = True
                data = self._z.unused_data
            else:
                data = self._z.unconsumed_tail

    def _count(self, out: bytes) -> None:
        self.size += len(out)
        if self.size > self.limit:
            raise BodyTooLarge(self.limit)
        if out:
            self.digest.update(out)
            if self.keep:
                self.out.append(out)

    def finish(self) -> bytes:
        if self._z is None:
            return b""
        if not self._ended:
            try:
                self._count(self._z.flush(self.limit - self.size + 1))
            except zlib.error as e:
                raise CorruptEncoding(self.coding, str(e)) from None
            if not self._z.eof:
                raise CorruptEncoding(self.coding, "the compressed stream is truncated")
        return b"".join(self.out)
