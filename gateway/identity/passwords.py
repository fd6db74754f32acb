"""People's passwords: argon2id hashes, and the rules of NIST SP 800-63B §3.1.1.2.

The rules are length (at least `min_length`, at most `MAX_LENGTH` characters, counted
after Unicode NFKC normalisation, spaces and any character allowed), not one of the
bundled breached passwords, and not the account's own name. There are deliberately no
composition rules ("a digit and a symbol"): NIST says they make passwords worse.

Example:
    >>> problems = password_problems("correct horse battery", account="nva")
    >>> problems
    []
    >>> stored = hash_password("correct horse battery")
    >>> verify_password(stored, "correct horse battery")
    True
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import threading
import unicodedata
from collections.abc import Callable
from importlib import resources
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = [
    "MAX_LENGTH",
    "MIN_LENGTH",
    "ahash_password",
    "averify_password",
    "dummy_verify",
    "hash_password",
    "is_breached",
    "needs_rehash",
    "password_problems",
    "verify_password",
]

T = TypeVar("T")

# SP 800-63B: at least 8 with a second factor, 15 alone; the console always asks for a
# second factor, and 12 is the gateway's default. At least 64 must be accepted.
MIN_LENGTH = 12
MAX_LENGTH = 128

# argon2id with OWASP's first recommended setting (m=19 MiB, t=2, p=1), not
# argon2-cffi's default (RFC 9106's m=64 MiB, t=3, p=4): the gateway's cores serve
# exchanges too. Measured on a loaded 2-core machine: 65 ms a verification, against
# 670 ms for the default. Hashes made with other settings are redone at the next sign-in.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Hashing runs in worker threads (argon2-cffi releases the GIL), at most this many at
# once, so that a burst of sign-ins neither stalls the event loop nor takes more than
# 2 x 19 MiB.
# A thread's semaphore, taken in the worker thread: it belongs to no event loop.
_AT_ONCE = threading.BoundedSemaphore(2)


def _bounded(work: Callable[..., T], *args: Any) -> T:
    with _AT_ONCE:
        return work(*args)


_DUMMY = _HASHER.hash("a password nobody has, to spend the same time on unknown names")


def _normalised(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


@functools.cache
def _breached() -> frozenset[str]:
    data = resources.files("gateway.identity").joinpath("data/common-passwords.txt.gz")
    return frozenset(gzip.decompress(data.read_bytes()).decode().split())


def is_breached(password: str) -> bool:
    """Is it on the bundled list of breached passwords (compared lowercased)?

    Example:
        >>> is_breached("Sông Hồng mùa lũ")
        False
        >>> is_breached("1qaz2wsx3edc4rfv")
        True
    """
    return _normalised(password).lower() in _breached()


def password_problems(
    password: str, *, account: str = "", min_length: int = MIN_LENGTH
) -> list[str]:
    """Why the password may not be chosen: message keys of the console's catalogue
    (empty: it may).

    Args:
        password: the candidate.
        account: the account's name, which the password may not be or contain.
        min_length: the shortest allowed (settings.console_password_min_length).

    Example:
        >>> password_problems("short")
        ['password.too_short']
    """
    text = _normalised(password)
    problems = []
    if len(text) < min_length:
        problems.append("password.too_short")
    if len(text) > MAX_LENGTH:
        problems.append("password.too_long")
    if is_breached(text):
        problems.append("password.breached")
    if account and account.lower() in text.lower():
        problems.append("password.contains_name")
    if text and len(set(text)) == 1:
        problems.append("password.repetitive")
    return problems


def hash_password(password: str) -> str:
    """An argon2id hash in PHC string form, with its own random salt.

    Example:
        >>> hash_password("correct horse battery").startswith("$argon2id$")
        True
    """
    return _HASHER.hash(_normalised(password))


def verify_password(stored: str, password: str) -> bool:
    """Does the password match the stored hash (in constant time, by argon2)?

    Example:
        >>> verify_password(hash_password("a long passphrase"), "a long passphrase")
        True
    """
    try:
        return _HASHER.verify(stored, _normalised(password))
    except (VerificationError, InvalidHashError):
        return False


def dummy_verify(password: str) -> None:
    """Spend a verification's time for a name that has no account, so that the time of
    an answer does not tell which names exist."""
    verify_password(_DUMMY, password)


async def averify_password(stored: str | None, password: str) -> bool:
    """`verify_password` off the event loop, a bounded number at once; `stored` None
    spends the same time on a name that has no account and answers False.

    Example:
        >>> await averify_password(None, "anything")
        False
    """
    if stored is None:
        await asyncio.to_thread(_bounded, dummy_verify, password)
        return False
    return await asyncio.to_thread(_bounded, verify_password, stored, password)


async def ahash_password(password: str) -> str:
    """`hash_password` off the event loop, a bounded number at once.

    Example:
        >>> (await ahash_password("correct horse battery")).startswith("$argon2id$")
        True
    """
    return await asyncio.to_thread(_bounded, hash_password, password)


def needs_rehash(stored: str) -> bool:
    """Was the hash made with weaker parameters than today's (then rehash at sign-in)?"""
    return _HASHER.check_needs_rehash(stored)
