"""The second factor: time-based one-time passwords (RFC 6238, 30-second steps, six
digits, HMAC-SHA1: what every authenticator app reads from an `otpauth://` URI).

pyotp makes the codes; what is here is the policy around them: one step of clock drift
either way, and a code accepted once only (the step it matched is kept, and a code of
that step or an earlier one is refused, RFC 6238 §5.2).

Example:
    >>> secret = new_secret()
    >>> step = matching_step(secret, pyotp.TOTP(secret).now(), after=0)
    >>> step is not None
    True
"""

from __future__ import annotations

import hmac
import time

import pyotp

__all__ = ["ISSUER", "code_at", "matching_step", "new_secret", "provisioning_uri"]

ISSUER = "LGSP"
STEP_SECONDS = 30
DRIFT_STEPS = 1


def new_secret() -> str:
    """A random 160-bit secret, base32 (RFC 4226 §4 recommends 160 bits).

    Example:
        >>> len(new_secret())
        32
    """
    return pyotp.random_base32()


def provisioning_uri(secret: str, account: str, issuer: str = ISSUER) -> str:
    """The `otpauth://totp/...` URI an authenticator app scans (or a person types).

    Example:
        >>> provisioning_uri("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "nva")
        'otpauth://totp/LGSP:nva?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=LGSP'
    """
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def code_at(secret: str, when: float) -> str:
    """The code of the step `when` (Unix seconds) falls in; what the app shows then.

    Example:
        >>> code_at("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", 0)
        '702218'
    """
    return pyotp.TOTP(secret).at(int(when))


def matching_step(secret: str, code: str, *, after: int, now: float | None = None) -> int | None:
    """The time step whose code `code` is, within one step of now, if that step is later
    than `after` (the last step accepted); None otherwise.

    Example:
        >>> matching_step("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "000000", after=0) is None
        True
    """
    code = code.strip().replace(" ", "")
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = int((time.time() if now is None else now) // STEP_SECONDS)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if step > after and hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None
