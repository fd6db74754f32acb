"""`lgsp account create|reset|disable|roles`: people's console accounts, from the host.

`create` and `reset` print the one-time password, the TOTP secret and its `otpauth://`
URI once (the store keeps an argon2id hash and the secret for checking codes only).
Each change is an admin event whose actor is the host's user (`cli:<user>@<host>`).

Example:
    $ lgsp account create nva --name "Nguyễn Văn A" --role administrator
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from gateway.identity import accounts
from gateway.identity.accounts import AccountError, Issued
from gateway.ops.cli.common import cli_actor, settings_from, with_session

__all__ = ["add_commands", "print_issued"]


def print_issued(issued: Issued, roles: list[str] | None = None) -> None:
    """What a person needs to sign in the first time, printed once."""
    print(f"account:      {issued.name}")
    if roles:
        print(f"roles:        {', '.join(roles)}")
    print(f"password:     {issued.password}")
    print(f"TOTP secret:  {issued.totp_secret}")
    print(f"TOTP URI:     {issued.uri}")


def _run(args: argparse.Namespace, work: Any) -> int:
    try:
        asyncio.run(with_session(settings_from(args), work))
    except AccountError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _password(args: argparse.Namespace) -> str | None:
    # From standard input, never from the command line (where `ps` would show it).
    return sys.stdin.readline().rstrip("\n") if args.password_stdin else None


def cmd_create(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    password = _password(args)
    out: list[Issued] = []

    async def work(s: Any) -> None:
        out.append(
            await accounts.create_account(
                s,
                name=args.account,
                display_name=args.name or args.account,
                roles=args.role,
                actor=cli_actor(),
                password=password,
                min_length=settings.console_password_min_length,
            )
        )

    status = _run(args, work)
    if status == 0:
        print_issued(out[0], accounts.validate_roles(args.role))
        print("give these to the person now: they are not shown again.", file=sys.stderr)
    return status


def cmd_reset(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    password = _password(args)
    out: list[Issued] = []

    async def work(s: Any) -> None:
        out.append(
            await accounts.reset_account(
                s,
                args.account,
                actor=cli_actor(),
                password=password,
                min_length=settings.console_password_min_length,
            )
        )

    status = _run(args, work)
    if status == 0:
        print_issued(out[0])
    return status


def cmd_disable(args: argparse.Namespace) -> int:
    async def work(s: Any) -> None:
        await accounts.disable_account(s, args.account, actor=cli_actor())

    status = _run(args, work)
    if status == 0:
        print(f"account {args.account} disabled; its sessions are ended")
    return status


def cmd_roles(args: argparse.Namespace) -> int:
    async def work(s: Any) -> None:
        await accounts.set_roles(s, args.account, args.role, actor=cli_actor())

    status = _run(args, work)
    if status == 0:
        print(f"account {args.account}: {', '.join(accounts.validate_roles(args.role))}")
    return status


def add_commands(sub: Any) -> None:
    account = sub.add_parser("account", help="people's console accounts")
    asub = account.add_subparsers(dest="account_command", required=True)

    def with_roles(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--role",
            action="append",
            required=True,
            choices=accounts.ROLES,
            help="a role (repeatable); 'audit:unmask' goes beside 'auditor'",
        )

    def with_password(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from standard input (default: a random one, printed)",
        )

    create = asub.add_parser("create", help="create an account; print its password and TOTP")
    create.add_argument("account", help="the sign-in name (a-z, 0-9, '.', '_', '-')")
    create.add_argument("--name", help="the person's full name")
    with_roles(create)
    with_password(create)
    create.set_defaults(func=cmd_create)
    reset = asub.add_parser("reset", help="new password and TOTP secret; unlock; end sessions")
    reset.add_argument("account")
    with_password(reset)
    reset.set_defaults(func=cmd_reset)
    disable = asub.add_parser("disable", help="the account may no longer sign in")
    disable.add_argument("account")
    disable.set_defaults(func=cmd_disable)
    roles = asub.add_parser("roles", help="set the account's roles (its sessions end)")
    roles.add_argument("account")
    with_roles(roles)
    roles.set_defaults(func=cmd_roles)
