"""`lgsp client ...` and `lgsp keys rotate`: departmental systems, their credentials (TLS
client certificates pinned included), and the token-signing keys."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, get_args

from gateway.admin import credentials as credential_ops
from gateway.config import versions as policy_state
from gateway.config.policy import Role
from gateway.core.problems import Problem
from gateway.core.tls import certificate_file
from gateway.identity.keys import KeyStore
from gateway.ops.cli.common import (
    admin_command,
    cli_actor,
    issue_credential,
    parse_when,
    settings_from,
    with_session,
)
from gateway.store import changes as admin


def cmd_client_create(args: argparse.Namespace) -> int:
    async def work(session: Any) -> dict[str, Any]:
        await policy_state.create_client(
            session,
            code=args.code,
            agency_code=args.agency,
            name=args.name,
            actor=cli_actor(),
            roles=args.role,
        )
        return await issue_credential(session, args.code, args.api_key, replace=False)

    status = admin_command(settings_from(args), work)
    if status == 0:
        print("store the secret now: the gateway keeps only its digest.", file=sys.stderr)
    return status


def cmd_client_credential(args: argparse.Namespace) -> int:
    return admin_command(
        settings_from(args),
        lambda s: issue_credential(s, args.code, args.api_key, replace=args.replace),
    )


def cmd_client_pin(args: argparse.Namespace) -> int:
    """Pin a client certificate to a system: given as a pin, or read from its PEM file."""
    if (args.pin is None) == (args.cert is None):
        print("error: give a pin or --cert FILE (one of them)", file=sys.stderr)
        return 2
    pin = args.pin
    if args.cert is not None:
        try:
            found = certificate_file(Path(args.cert).read_bytes())
        except (OSError, ValueError) as e:
            print(f"error: {args.cert}: {e}", file=sys.stderr)
            return 2
        pin = found.subject_pin if args.by == "subject" else found.spki_pin

    async def work(session: Any) -> dict[str, Any]:
        view = await credential_ops.pin(
            session,
            client_code=args.code,
            pin=pin,
            actor=cli_actor(),
            expires_at=parse_when(args.expires),
        )
        return {"client_id": args.code, "credential_id": view.id, "pin": view.pin}

    try:
        return admin_command(settings_from(args), work)
    except Problem as p:
        print(f"error: {p.detail}", file=sys.stderr)
        return 2


def cmd_credential_revoke(args: argparse.Namespace) -> int:
    status = admin_command(
        settings_from(args),
        lambda s: credential_ops.revoke(s, credential_id=args.id, actor=cli_actor()),
    )
    if status == 0:
        print(f"credential {args.id} revoked")
    return status


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    keys = KeyStore(settings.keys_dir, settings.key_passphrase, settings.token_algorithms[0])
    keys.load()
    pair = keys.rotate(
        retire_after_seconds=settings.token_ttl_seconds + settings.clock_skew_seconds
    )

    async def work(session: Any) -> None:
        await admin.record(session, actor=cli_actor(), action="keys.rotate", target=pair.kid)

    asyncio.run(with_session(settings, work))
    print(f"new signing key {pair.kid}; tokens signed by older keys stay valid until they expire")
    return 0


def add_commands(sub: Any) -> None:
    client = sub.add_parser("client", help="departmental systems and their credentials")
    csub = client.add_subparsers(dest="client_command", required=True)
    create = csub.add_parser("create", help="create a client and print its first credential")
    create.add_argument("code")
    create.add_argument("--agency", required=True, help="agency code of the owning agency")
    create.add_argument("--name", required=True)
    create.add_argument("--api-key", action="store_true", help="issue an API key, not a secret")
    create.add_argument(
        "--role",
        action="append",
        default=[],
        choices=get_args(Role),
        help="an administrative role or right (repeatable); departmental systems need none",
    )
    create.set_defaults(func=cmd_client_create)
    cred = csub.add_parser("credential", help="issue another secret or API key")
    cred.add_argument("code")
    cred.add_argument("--api-key", action="store_true")
    cred.add_argument("--replace", action="store_true", help="revoke the client's others")
    cred.set_defaults(func=cmd_client_credential)
    pinned = csub.add_parser(
        "pin", help="pin a TLS client certificate to a client (docs/administrator.md)"
    )
    pinned.add_argument("code")
    pinned.add_argument("pin", nargs="?", help="spki-sha256:<hex> or subject:<RFC 4514 DN>")
    pinned.add_argument("--cert", help="or the certificate's PEM file, to pin by --by")
    pinned.add_argument("--by", choices=["key", "subject"], default="key")
    pinned.add_argument("--expires", help="when the pin expires (ISO 8601; Vietnam time)")
    pinned.set_defaults(func=cmd_client_pin)
    revoke = csub.add_parser("revoke", help="revoke a credential by id")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=cmd_credential_revoke)

    keys = sub.add_parser("keys", help="token-signing keys")
    keys.add_argument("action", choices=["rotate"])
    keys.set_defaults(func=cmd_keys_rotate)
