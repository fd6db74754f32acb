"""What every command group of the CLI shares: settings from the arguments, a database
session for one piece of work, the actor recorded for a change made on the host, and
printing rows."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import select

from gateway.admin import credentials as credential_ops
from gateway.config import versions as policy_state
from gateway.core.settings import Settings
from gateway.identity import credentials
from gateway.registry.bundled import load_bundled
from gateway.store.db import create_engine, session_factory
from gateway.store.models import Credential

VIETNAM = timezone(timedelta(hours=7), "ICT")


def cli_actor() -> str:
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


async def with_session(settings: Settings, work: Callable[[Any], Awaitable[Any]]) -> Any:
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()


def settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("host", "port", "database_url"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return Settings(**overrides)


def admin_command(settings: Settings, work: Callable[[Any], Awaitable[Any]]) -> int:
    """Run one admin change in one transaction; print its result as JSON, if any."""
    try:
        out = asyncio.run(with_session(settings, work))
    except (
        credential_ops.NotFound,
        credential_ops.LockedOut,
        policy_state.PolicyRejected,
        ValidationError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if out is not None:
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    return 0


async def issue_credential(
    session: Any, code: str, api_key: bool, *, replace: bool
) -> dict[str, Any]:
    value = await credential_ops.issue(
        session,
        client_code=code,
        kind="api_key" if api_key else "secret",
        actor=cli_actor(),
        revoke_others=replace,
    )
    credential_id = await session.scalar(
        select(Credential.id).where(Credential.secret_sha256 == credentials.digest(value))
    )
    return {
        "client_id": code,
        ("api_key" if api_key else "client_secret"): value,
        "credential_id": credential_id,
    }


async def register_bundled(settings: Settings, directory: Path) -> list[str]:
    engine = create_engine(settings.database_url)
    try:
        return await load_bundled(session_factory(engine), directory)
    finally:
        await engine.dispose()


def print_rows(
    rows: list[Any], model: Any, columns: tuple[str, ...], *, as_json: bool, header: bool
) -> None:
    if as_json:
        for r in rows:
            doc = {c.name: getattr(r, c.name) for c in model.__table__.columns}
            sys.stdout.write(orjson.dumps(doc).decode() + "\n")
        sys.stdout.flush()
        return
    table = [[cell(getattr(r, c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in table)]) for i, c in enumerate(columns)]
    if header:
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)), flush=True)


def parse_when(text: str | None) -> datetime | None:
    if text is None:
        return None
    value = datetime.fromisoformat(text)
    # A bare date or time is read as Vietnam time, as an auditor would mean it.
    return value if value.tzinfo else value.replace(tzinfo=VIETNAM)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if hasattr(value, "isoformat"):
        return str(value.isoformat(timespec="seconds"))
    return str(value)
