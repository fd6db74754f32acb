"""Text a caller sent, made safe to store, hash, log and print, whatever its bytes.

aiohttp decodes header values and request targets as UTF-8 with `surrogateescape`, so a
byte that is not UTF-8 (`\\xff`) arrives as a lone surrogate (`\\udcff`). No JSON
encoder, no PostgreSQL text column and no UTF-8 log line takes one, and PostgreSQL
refuses NUL in text as well: kept as it is, one such value would make an exchange
unrecordable. `storable` writes each such byte as the four characters `\\xff` (and NUL
as `\\x00`), so the record keeps what was sent, readably, and can always be written.

Example:
    >>> storable("ab\\udcff\\udcfe")
    'ab\\\\xff\\\\xfe'
    >>> storable("Nguyễn Văn A")
    'Nguyễn Văn A'
"""

from __future__ import annotations

__all__ = ["storable", "undecodable"]


def storable(text: str) -> str:
    """`text` with undecodable bytes and NUL written as `\\xNN` escapes; unchanged (the
    same object) when there is nothing to escape, which is the common case."""
    if text.isascii():
        return text.replace("\x00", "\\x00") if "\x00" in text else text
    if not undecodable(text):
        return text.replace("\x00", "\\x00") if "\x00" in text else text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no byte maps to (not from a decoder)
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


def undecodable(text: str) -> bool:
    """Does `text` hold a byte that was not valid UTF-8 (a lone surrogate)?"""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
