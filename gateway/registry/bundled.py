"""The schemas the project ships in `schemas/`, registered at start and by
`lgsp schema load`, idempotently: an unchanged file adds nothing.

`schemas/<domain>/<name>.json` is subject `<domain>.<name>` (JSON Schema);
`schemas/<domain>/<name>.xsd` is subject `<domain>.<name>` (XML Schema).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.core.logging import log
from gateway.registry import store
from gateway.registry.store import RegistryError
from gateway.store.models import RegistrySchema, RegistryVersion

ACTOR = "bundled-schemas"


@dataclass(frozen=True, slots=True)
class SchemaFile:
    subject: str
    schema_type: str
    path: Path
    text: str


def read_bundled(directory: Path) -> list[SchemaFile]:
    if not directory.is_dir():
        return []
    found = []
    for path in sorted([*directory.rglob("*.json"), *directory.rglob("*.xsd")]):
        subject = ".".join(path.relative_to(directory).with_suffix("").parts)
        schema_type = "XML" if path.suffix == ".xsd" else "JSON"
        found.append(SchemaFile(subject, schema_type, path, path.read_text(encoding="utf-8")))
    return found


async def load_bundled(sessions: async_sessionmaker[AsyncSession], directory: Path) -> list[str]:
    """Register every bundled schema; return a line per new version. A file that the
    registry refuses (invalid, or incompatible with the subject's level) is reported
    and skipped: the others still load."""
    changes: list[str] = []
    known = await _registered(sessions)
    for f in await asyncio.to_thread(read_bundled, directory):
        text = f.text
        if (f.subject, f.schema_type, text) in known:
            continue  # registered as it is: every start after the first (no parse, no lock)
        try:
            async with sessions() as session, session.begin():
                parsed = store.parse_schema(f.schema_type, text)
                schema_id, version, created = await store.register(
                    session, f.subject, parsed, actor=ACTOR, text=text
                )
        except RegistryError as e:
            log.error(
                "bundled schema refused", subject=f.subject, file=str(f.path), error=e.message
            )
            changes.append(f"refused {f.subject} ({f.path}): {e.message}")
            continue
        if created:
            changes.append(f"registered {f.subject} version {version} (id {schema_id})")
    return changes


async def _registered(sessions: async_sessionmaker[AsyncSession]) -> set[tuple[str, str, str]]:
    """(subject, schema type, text) of every version the registry holds, in one read."""
    async with sessions() as session:
        rows = await session.execute(
            select(RegistryVersion.subject, RegistrySchema.schema_type, RegistrySchema.schema)
            .join(RegistrySchema, RegistryVersion.schema_id == RegistrySchema.id)
            .where(RegistryVersion.deleted.is_(False))
        )
        return {(subject, kind, text) for subject, kind, text in rows.all()}
