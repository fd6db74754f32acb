"""Passkeys (WebAuthn, py_webauthn): a second factor beside the TOTP code. A signed-in
person adds one (registration); after the password, the person may give a passkey
instead of the code (authentication).

Each ceremony's challenge is random, kept in the person's server-side session row and
good once: a replayed answer finds no challenge, or another one. The relying party is
the console's host (`rp_id`) and its origin; a credential is stored with its COSE public
key and the authenticator's signature counter, and an answer whose counter goes back is
refused (a cloned authenticator). User verification (the authenticator's own PIN or
biometric) is asked for and not required: the password is the first factor.

Example:
    >>> options = registration_options(account, keys, party, challenge)
    >>> key = await register(s, account, credential_json, challenge, party, "Laptop")
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from gateway.identity.accounts import person
from gateway.store import changes
from gateway.store.models import Account, AdminEvent, Passkey, utcnow

__all__ = [
    "Party",
    "Refused",
    "authenticate",
    "authentication_options",
    "new_challenge",
    "passkeys_of",
    "register",
    "registration_options",
]


@dataclass(frozen=True, slots=True)
class Party:
    """The relying party: the console's host name (never an IP address) and origin."""

    rp_id: str
    origin: str
    name: str = "LGSP"


class Refused(Exception):
    """The authenticator's answer is not good (the reason, for the log only)."""


def new_challenge() -> str:
    """A fresh challenge, base64url (32 random bytes)."""
    return bytes_to_base64url(secrets.token_bytes(32))


async def passkeys_of(session: AsyncSession, account: Account) -> list[Passkey]:
    """The account's passkeys, oldest first."""
    rows = await session.scalars(
        select(Passkey).where(Passkey.account_id == account.id).order_by(Passkey.id)
    )
    return list(rows.all())


def _descriptors(keys: list[Passkey]) -> list[PublicKeyCredentialDescriptor]:
    return [PublicKeyCredentialDescriptor(id=base64url_to_bytes(k.credential_id)) for k in keys]


def registration_options(
    account: Account, keys: list[Passkey], party: Party, challenge: str
) -> str:
    """The options `navigator.credentials.create` takes, as JSON (the account's present
    passkeys excluded, so one authenticator is not added twice).

    Example:
        >>> json.loads(registration_options(account, [], party, new_challenge()))["rp"]
        {'name': 'LGSP', 'id': 'lgsp.tinh.gov.vn'}
    """
    options = generate_registration_options(
        rp_id=party.rp_id,
        rp_name=party.name,
        user_name=account.name,
        user_id=str(account.id).encode(),
        user_display_name=account.display_name,
        challenge=base64url_to_bytes(challenge),
        exclude_credentials=_descriptors(keys),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
    )
    return options_to_json(options)


def authentication_options(keys: list[Passkey], party: Party, challenge: str) -> str:
    """The options `navigator.credentials.get` takes, as JSON: the account's passkeys."""
    options = generate_authentication_options(
        rp_id=party.rp_id,
        challenge=base64url_to_bytes(challenge),
        allow_credentials=_descriptors(keys),
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return options_to_json(options)


def _event(account: Account, action: str, **after: object) -> AdminEvent:
    return AdminEvent(
        actor=person(account.name), action=action, target=person(account.name), after=after
    )


async def register(
    session: AsyncSession,
    account: Account,
    credential: str,
    challenge: str,
    party: Party,
    name: str,
) -> Passkey:
    """Check the authenticator's answer to `challenge` and keep the new passkey
    (recorded as `account.passkey-add`).

    Raises:
        Refused: the answer is not to this challenge, party or origin, or not valid.
    """
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=party.rp_id,
            expected_origin=party.origin,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as e:
        raise Refused(str(e)) from e
    key = Passkey(
        account_id=account.id,
        credential_id=bytes_to_base64url(verified.credential_id),
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        name=name[:64],
    )
    session.add(key)
    await session.flush()
    await changes.note(session, [_event(account, "account.passkey-add", passkey=key.name)])
    return key


async def authenticate(
    session: AsyncSession, account: Account, credential: str, challenge: str, party: Party
) -> Passkey:
    """Check the authenticator's answer to `challenge` with one of the account's
    passkeys; its counter moves on.

    Raises:
        Refused: no such passkey of the account, or the answer is not good.
    """
    keys = {k.credential_id: k for k in await passkeys_of(session, account)}
    try:
        key = keys[str(json.loads(credential)["id"])]
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=party.rp_id,
            expected_origin=party.origin,
            credential_public_key=key.public_key,
            credential_current_sign_count=key.sign_count,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as e:
        raise Refused(str(e)) from e
    key.sign_count, key.last_used_at = verified.new_sign_count, utcnow()
    return key
