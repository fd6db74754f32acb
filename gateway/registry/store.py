"""Schema registry operations with the Confluent Schema Registry's semantics: subjects
with numbered versions, registry-wide schema ids shared across subjects, soft and
permanent deletes, and compatibility levels checked on every new version.

Each write is recorded as an admin change (and bumps the configuration version), so
running gateways recompile the validators of the services that use the subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.registry import compat
from gateway.registry.schema import InvalidSchema, ParsedSchema, parse
from gateway.store import changes as admin
from gateway.store.models import RegistryConfig, RegistryMode, RegistrySchema, RegistryVersion

DEFAULT_COMPATIBILITY = "BACKWARD"
GLOBAL = ""  # the RegistryConfig row that holds the registry-wide level


class RegistryError(Exception):
    """An error in the Confluent shape: HTTP status plus a five-digit error code."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def subject_not_found(subject: str) -> RegistryError:
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


def version_not_found(subject: str, version: Any) -> RegistryError:
    return RegistryError(404, 40402, f"Version {version} not found for subject '{subject}'.")


@dataclass(frozen=True, slots=True)
class VersionInfo:
    subject: str
    version: int
    id: int
    schema_type: str
    schema: str
    deleted: bool

    def as_confluent(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "subject": self.subject,
            "version": self.version,
            "id": self.id,
            "schema": self.schema,
        }
        doc["schemaType"] = self.schema_type  # omitted by Confluent only for AVRO
        return doc


def check_subject(subject: str) -> None:
    if not 0 < len(subject) <= 255 or not subject.isprintable():
        raise RegistryError(422, 42208, "Invalid subject: 1-255 printable characters, without '/'.")


def parse_version(value: str) -> int | None:
    """A version path segment: a positive number, or "latest" / -1 (None)."""
    if value in ("latest", "-1"):
        return None
    if value.isdigit() and 0 < int(value) < 2**31:
        return int(value)
    raise RegistryError(
        422,
        42202,
        "The specified version is not a valid version id. Allowed values are "
        'between [1, 2^31-1] and the string "latest"',
    )


def parse_schema(schema_type: str | None, text: Any) -> ParsedSchema:
    if not isinstance(text, str) or not text:
        raise RegistryError(422, 42201, "Invalid schema: 'schema' must be a non-empty string.")
    try:
        return parse(schema_type or "JSON", text)
    except InvalidSchema as e:
        raise RegistryError(422, 42201, f"Invalid schema: {e}") from None


# -- reads ------------------------------------------------------------------------------------


async def _versions(
    session: AsyncSession, subject: str, *, deleted: bool = False
) -> list[tuple[RegistryVersion, RegistrySchema]]:
    q = (
        select(RegistryVersion, RegistrySchema)
        .join(RegistrySchema, RegistrySchema.id == RegistryVersion.schema_id)
        .where(RegistryVersion.subject == subject)
        .order_by(RegistryVersion.version)
    )
    if not deleted:
        q = q.where(RegistryVersion.deleted.is_(False))
    return [(v, s) for v, s in (await session.execute(q)).all()]


def _info(v: RegistryVersion, s: RegistrySchema) -> VersionInfo:
    return VersionInfo(v.subject, v.version, s.id, s.schema_type, s.schema, v.deleted)


async def list_subjects(session: AsyncSession, *, deleted: bool = False) -> list[str]:
    q = select(RegistryVersion.subject).distinct().order_by(RegistryVersion.subject)
    if not deleted:
        q = q.where(RegistryVersion.deleted.is_(False))
    return list((await session.scalars(q)).all())


async def list_versions(session: AsyncSession, subject: str, *, deleted: bool = False) -> list[int]:
    rows = await _versions(session, subject, deleted=deleted)
    if not rows:
        raise subject_not_found(subject)
    return [v.version for v, _ in rows]


async def get_version(
    session: AsyncSession, subject: str, version: int | None, *, deleted: bool = False
) -> VersionInfo:
    rows = await _versions(session, subject, deleted=True)
    if not rows:
        raise subject_not_found(subject)
    live = [r for r in rows if deleted or not r[0].deleted]
    if version is None:
        if not live:
            raise subject_not_found(subject)
        return _info(*live[-1])
    for v, s in live:
        if v.version == version:
            return _info(v, s)
    raise version_not_found(subject, version)


async def schema_by_id(session: AsyncSession, schema_id: int) -> RegistrySchema:
    row = await session.get(RegistrySchema, schema_id)
    if row is None:
        raise RegistryError(404, 40403, f"Schema {schema_id} not found")
    return row


async def subjects_of_schema(session: AsyncSession, schema_id: int) -> list[dict[str, Any]]:
    await schema_by_id(session, schema_id)
    rows = await session.scalars(
        select(RegistryVersion)
        .where(RegistryVersion.schema_id == schema_id, RegistryVersion.deleted.is_(False))
        .order_by(RegistryVersion.subject, RegistryVersion.version)
    )
    return [{"subject": r.subject, "version": r.version} for r in rows]


async def lookup(session: AsyncSession, subject: str, parsed: ParsedSchema) -> VersionInfo:
    rows = await _versions(session, subject)
    if not rows:
        raise subject_not_found(subject)
    for v, s in rows:
        if s.fingerprint == parsed.fingerprint and s.schema_type == parsed.schema_type:
            return _info(v, s)
    raise RegistryError(404, 40403, "Schema not found")


# -- compatibility ----------------------------------------------------------------------------


async def get_compatibility(
    session: AsyncSession, subject: str | None, *, default_to_global: bool = True
) -> str | None:
    if subject is not None:
        level = await session.scalar(
            select(RegistryConfig.compatibility).where(RegistryConfig.subject == subject)
        )
        if level is not None or not default_to_global:
            return level
    level = await session.scalar(
        select(RegistryConfig.compatibility).where(RegistryConfig.subject == GLOBAL)
    )
    return level or DEFAULT_COMPATIBILITY


def _problems(
    level: str, parsed: ParsedSchema, previous: list[tuple[RegistryVersion, RegistrySchema]]
) -> list[str]:
    if level == "NONE" or not previous:
        return []
    if parsed.schema_type == "XML" or any(s.schema_type != parsed.schema_type for _, s in previous):
        return [
            "XML Schema compatibility is not checked; set this subject's compatibility to NONE "
            "(PUT /config/{subject}) to register a new version"
            if parsed.schema_type == "XML"
            else "a subject's versions must all have the same schemaType"
        ]
    earlier = [orjson.loads(s.schema) for _, s in previous]
    versions = [v.version for v, _ in previous]
    found = compat.check(level, parsed.document, earlier)
    # compat names earlier schemas by index; callers know them by version number.
    return [_with_versions(str(p), versions) for p in found]


def _with_versions(message: str, versions: list[int]) -> str:
    for index in range(len(versions) - 1, -1, -1):
        message = message.replace(f"version index {index}", f"version {versions[index]}")
    return message


async def test_compatibility(
    session: AsyncSession, subject: str, version: int | str | None, parsed: ParsedSchema
) -> list[str]:
    """Against one version (number or None for latest), or "all" as the subject's level says."""
    rows = await _versions(session, subject)
    level = await get_compatibility(session, subject) or DEFAULT_COMPATIBILITY
    if version == "all":
        return _problems(level, parsed, rows)
    target = await get_version(session, subject, version if isinstance(version, int) else None)
    chosen = [r for r in rows if r[0].version == target.version]
    # Against one version the check is one step, whatever the transitivity.
    return _problems(level.removesuffix("_TRANSITIVE"), parsed, chosen)


# -- modes ------------------------------------------------------------------------------------

MODES = ("READWRITE", "READONLY")  # Confluent's IMPORT and READONLY_OVERRIDE have no use here
DEFAULT_MODE = "READWRITE"


async def get_mode(
    session: AsyncSession, subject: str | None, *, default_to_global: bool = True
) -> str | None:
    """The subject's mode, else the registry's (READWRITE unless set)."""
    if subject is not None:
        mode = await session.scalar(
            select(RegistryMode.mode).where(RegistryMode.subject == subject)
        )
        if mode is not None or not default_to_global:
            return mode
    mode = await session.scalar(select(RegistryMode.mode).where(RegistryMode.subject == GLOBAL))
    return mode or DEFAULT_MODE


async def _writable(session: AsyncSession, subject: str | None) -> None:
    """Refuse a change to a read-only registry or subject (Confluent's 42205)."""
    if await get_mode(session, subject) == "READONLY":
        where = f"Subject '{subject}'" if subject else "The registry"
        raise RegistryError(
            422, 42205, f"{where} is in read-only mode; set its mode to READWRITE first."
        )


async def set_mode(session: AsyncSession, subject: str | None, mode: Any, *, actor: str) -> str:
    await admin.serialize_changes(session)
    if mode not in MODES:
        raise RegistryError(422, 42204, f"Invalid mode {mode!r}; use one of {list(MODES)}")
    key = subject or GLOBAL
    row = await session.get(RegistryMode, key)
    before = row.mode if row else None
    if row is None:
        session.add(RegistryMode(subject=key, mode=mode))
    else:
        row.mode = mode
    await admin.record(
        session,
        actor=actor,
        action="registry.mode",
        target=subject or "(global)",
        before={"mode": before},
        after={"mode": mode},
    )
    return str(mode)


async def delete_mode(session: AsyncSession, subject: str, *, actor: str) -> str:
    await admin.serialize_changes(session)
    row = await session.get(RegistryMode, subject)
    if row is None:
        raise RegistryError(404, 40401, f"Subject '{subject}' does not have a mode of its own")
    mode = row.mode
    await session.delete(row)
    await admin.record(
        session, actor=actor, action="registry.mode_delete", target=subject, before={"mode": mode}
    )
    return mode


# -- writes -----------------------------------------------------------------------------------


async def register(
    session: AsyncSession, subject: str, parsed: ParsedSchema, *, actor: str, text: str
) -> tuple[int, int, bool]:
    """Register a schema under a subject: (schema id, version, created?)."""
    check_subject(subject)
    await admin.serialize_changes(session)
    await _writable(session, subject)
    rows = await _versions(session, subject)
    for v, s in rows:
        if s.fingerprint == parsed.fingerprint and s.schema_type == parsed.schema_type:
            return s.id, v.version, False
    level = await get_compatibility(session, subject) or DEFAULT_COMPATIBILITY
    problems = _problems(level, parsed, rows)
    if problems:
        raise RegistryError(
            409,
            409,
            f"Schema being registered is incompatible with an earlier schema for subject "
            f"'{subject}' under {level}: " + "; ".join(problems),
        )
    schema_row = await session.scalar(
        select(RegistrySchema).where(
            RegistrySchema.schema_type == parsed.schema_type,
            RegistrySchema.fingerprint == parsed.fingerprint,
        )
    )
    if schema_row is None:
        schema_row = RegistrySchema(
            schema_type=parsed.schema_type, schema=text, fingerprint=parsed.fingerprint
        )
        session.add(schema_row)
        await session.flush()
    latest = await session.scalar(
        select(func.max(RegistryVersion.version)).where(RegistryVersion.subject == subject)
    )
    version = (latest or 0) + 1
    session.add(RegistryVersion(subject=subject, version=version, schema_id=schema_row.id))
    await session.flush()
    await admin.record(
        session,
        actor=actor,
        action="registry.register",
        target=f"{subject}/{version}",
        after={"id": schema_row.id, "schemaType": parsed.schema_type, "level": level},
    )
    return schema_row.id, version, True


async def delete_subject(
    session: AsyncSession, subject: str, *, permanent: bool, actor: str
) -> list[int]:
    await admin.serialize_changes(session)
    await _writable(session, subject)
    rows = await _versions(session, subject, deleted=True)
    if not rows:
        raise subject_not_found(subject)
    live = [v for v, _ in rows if not v.deleted]
    if permanent:
        if live:
            raise RegistryError(
                404,
                40405,
                f"Subject '{subject}' was not deleted first before being permanently deleted",
            )
        await session.execute(delete(RegistryVersion).where(RegistryVersion.subject == subject))
        await session.execute(delete(RegistryConfig).where(RegistryConfig.subject == subject))
        versions = [v.version for v, _ in rows]
    else:
        if not live:
            raise RegistryError(
                404,
                40404,
                f"Subject '{subject}' was soft deleted. Set permanent=true to delete permanently",
            )
        for v in live:
            v.deleted = True
        versions = [v.version for v in live]
    await admin.record(
        session,
        actor=actor,
        action="registry.delete_subject",
        target=subject,
        after={"versions": versions, "permanent": permanent},
    )
    return versions


async def delete_version(
    session: AsyncSession, subject: str, version: int | None, *, permanent: bool, actor: str
) -> int:
    await admin.serialize_changes(session)
    await _writable(session, subject)
    rows = await _versions(session, subject, deleted=True)
    if not rows:
        raise subject_not_found(subject)
    if version is None:
        live = [v for v, _ in rows if not v.deleted]
        if not live:
            raise subject_not_found(subject)
        target = live[-1]
    else:
        found = [v for v, _ in rows if v.version == version]
        if not found:
            raise version_not_found(subject, version)
        target = found[0]
    if permanent:
        if not target.deleted:
            raise RegistryError(
                404,
                40407,
                f"Subject '{subject}' Version {target.version} was not deleted "
                "first before being permanently deleted",
            )
        await session.delete(target)
    else:
        if target.deleted:
            raise RegistryError(
                404,
                40406,
                f"Subject '{subject}' Version {target.version} was soft deleted. "
                "Set permanent=true to delete permanently",
            )
        target.deleted = True
    await admin.record(
        session,
        actor=actor,
        action="registry.delete_version",
        target=f"{subject}/{target.version}",
        after={"permanent": permanent},
    )
    return target.version


async def set_compatibility(
    session: AsyncSession, subject: str | None, level: Any, *, actor: str
) -> str:
    await admin.serialize_changes(session)
    await _writable(session, subject)
    if level not in compat.MODES:
        raise RegistryError(
            422, 42203, f"Invalid compatibility level {level!r}; use one of {list(compat.MODES)}"
        )
    key = subject or GLOBAL
    row = await session.get(RegistryConfig, key)
    before = row.compatibility if row else None
    if row is None:
        session.add(RegistryConfig(subject=key, compatibility=level))
    else:
        row.compatibility = level
    await admin.record(
        session,
        actor=actor,
        action="registry.config",
        target=subject or "(global)",
        before={"compatibility": before},
        after={"compatibility": level},
    )
    return str(level)


async def delete_compatibility(session: AsyncSession, subject: str, *, actor: str) -> str:
    await admin.serialize_changes(session)
    await _writable(session, subject)
    row = await session.get(RegistryConfig, subject)
    if row is None:
        raise RegistryError(
            404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured"
        )
    level = row.compatibility
    await session.delete(row)
    await admin.record(
        session,
        actor=actor,
        action="registry.config_delete",
        target=subject,
        before={"compatibility": level},
    )
    return level
