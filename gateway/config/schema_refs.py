"""References from a policy to the schema registry: which schemas the services and
topics name that the registry does not hold, named as a person can act on.

Example:
    >>> problems = await unregistered_schemas(session, policy)  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.config.policy import PolicySet
from gateway.store.models import RegistryVersion

__all__ = ["unregistered_schemas"]


async def unregistered_schemas(
    session: AsyncSession | None, policy: PolicySet, bundled: frozenset[str] = frozenset()
) -> list[str]:
    """The request and response schemas services name that the registry does not hold,
    each as `services[i].schemas.<kind>: ...` naming the service, the subject and the
    version, and the subject meant when it looks misspelt.

    Args:
        session: the store (None: no registry to ask, only `bundled`).
        policy: the policy whose services are checked.
        bundled: subjects `policy apply` registers before it applies (the project's
            `schemas/`), taken as present at version 1 and latest when the registry
            does not have them yet (`lgsp policy validate` without a store).
    Returns:
        One message per reference that does not resolve; none when all do.
    """
    refs = [
        (i, svc, kind, ref)
        for i, svc in enumerate(policy.services)
        for kind in ("request", "response")
        if (ref := getattr(svc.schemas, kind)) is not None
    ]
    if not refs and not any(t.event_schema for t in policy.topics):
        return []
    registered: dict[str, set[int]] = defaultdict(set)
    if session is not None:
        rows = await session.execute(
            select(RegistryVersion.subject, RegistryVersion.version).where(
                RegistryVersion.deleted.is_(False)
            )
        )
        for subject, version in rows.all():
            registered[subject].add(version)
    for subject in bundled:
        registered.setdefault(subject, {1})
    problems: list[str] = []
    for i, svc, kind, ref in refs:
        versions = registered.get(ref.subject)
        if versions and (ref.version == "latest" or ref.version in versions):
            continue
        problems.append(
            f"services[{i}].schemas.{kind}: service {svc.key} names "
            f"{_missing_schema(ref.subject, ref.version, versions, registered)}"
        )
    for i, topic in enumerate(policy.topics):
        ref = topic.event_schema
        if ref is None:
            continue
        versions = registered.get(ref.subject)
        if versions and (ref.version == "latest" or ref.version in versions):
            continue
        problems.append(
            f"topics[{i}].event_schema: topic {topic.code} names "
            f"{_missing_schema(ref.subject, ref.version, versions, registered)}"
        )
    return problems


def _missing_schema(
    subject: str, version: int | str, versions: set[int] | None, known: dict[str, set[int]]
) -> str:
    if versions:
        listed = ", ".join(str(v) for v in sorted(versions))
        return (
            f"version {version} of schema subject {subject!r}, which the registry does not "
            f"have (it has version {listed})"
        )
    close = difflib.get_close_matches(subject, list(known), n=1, cutoff=0.8)
    hint = f", did you mean {close[0]!r}?" if close else ""
    return (
        f"schema subject {subject!r}, which is not in the registry{hint} "
        "(lgsp schema load registers the files of schemas/, lgsp schema register others)"
    )
