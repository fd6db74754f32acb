"""Changing the policy as one version: an edit of the policy document, the whole policy
replaced, or an earlier version restored, each committed as one new policy version with
an admin event per entity changed, under the actor's name and comment.

Shared by every face that changes the configuration (the admin API, the console). The
caller reloads its gateway's tables afterwards; nothing here knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.admin.actor import ADMINISTRATOR, OPERATOR_KINDS, Actor
from gateway.admin.refusals import message_errors, refused, validation_errors
from gateway.config import versions
from gateway.config.diff import Change, diff, diff_documents
from gateway.config.policy import PolicySet, policy_document, with_mapping_digests
from gateway.core.problems import ACCESS_DENIED, NOT_FOUND, PRECONDITION_FAILED, Problem
from gateway.store import changes as admin
from gateway.store.models import PolicyVersion

__all__ = [
    "Editor",
    "begin_change",
    "compare",
    "current",
    "document_at",
    "edit",
    "history",
    "operator_may",
    "preview",
    "replace",
    "restore",
]

# Edits the policy document in place; returns the path of the entity it is about
# ("clients[5]"), to name errors relative to it, or None.
Edit = Callable[[dict[str, Any]], str | None]


@dataclass(frozen=True, slots=True)
class Editor:
    """Who changes the policy, where, and on what condition.

    `outbound` refuses upstream addresses outside the networks the gateway may call and
    secrets an upstream may not read;
    `if_match` is the policy version (an ETag, `"42"`) the change was prepared against;
    `dry_run` makes the change, with every check, and rolls it back: what it would
    change (the console's preview before a person confirms).
    """

    sessions: async_sessionmaker[AsyncSession]
    actor: Actor
    outbound: versions.OutboundRules | None = None
    if_match: str | None = None
    dry_run: bool = False


class _DryRun(Exception):  # not an error: the way out of a dry run's transaction
    def __init__(self, commit: versions.PolicyCommit) -> None:
        self.commit = commit


async def begin_change(session: AsyncSession, if_match: str | None) -> None:
    """Take the configuration lock before reading anything the change depends on, so two
    admins' edits apply one after the other instead of one undoing the other; then honour
    If-Match (the policy version a read named).

    Raises:
        Problem: 412 `precondition-failed` (RFC 9110 §13.1.1), with `current_version`, if
            the policy moved on.

    Example:
        >>> await begin_change(session, '"41"')  # the policy is at 42: 412
    """
    await admin.serialize_changes(session)
    if if_match is None:
        return
    now = await session.scalar(select(func.max(PolicyVersion.id))) or 0
    tags = {t.strip().removeprefix("W/").strip('"') for t in if_match.split(",")}
    if "*" not in tags and str(now) not in tags:
        raise Problem(
            PRECONDITION_FAILED,
            f"The policy is now at version {now}, not {if_match}: someone changed it since "
            "you read it. Read it again and redo the change.",
            current_version=now,
        )


def operator_may(actor: Actor, changes: list[Change]) -> None:
    """An operator's change may not reach beyond services, upstreams and rate limits (a
    service's rights go with the service when it is deleted).

    Raises:
        Problem: 403 `access-denied` naming what the change also touches.

    Example:
        >>> operator_may(Actor.client("vanhanh", frozenset({"operator"})), commit.changes)
    """
    if ADMINISTRATOR in actor.roles:
        return
    deleted = {c.key for c in changes if c.kind == "service" and c.op == "delete"}
    beyond = [
        c
        for c in changes
        if (
            c.kind not in OPERATOR_KINDS
            and not (c.kind == "access" and c.op == "delete" and c.key in deleted)
        )
        or _credentials_of_upstream(c)
    ]
    if beyond:
        what = "; ".join(c.summary for c in beyond)
        if any(c.kind == "access" for c in beyond):
            access = " Access rights (a service's `access` list) are"
        elif any(c.kind == "upstream" for c in beyond):
            access = " An upstream's credentials (its auth, and where they are sent) are"
        else:
            access = " This is"
        members: dict[str, Any] = {
            **actor.member,
            "required_roles": [ADMINISTRATOR],
            "changes": [c.summary for c in beyond],
        }
        raise Problem(
            ACCESS_DENIED,
            f"{actor.label} holds the 'operator' role, which changes services, upstreams "
            f"and rate limits, but this change also {what}.{access} the "
            f"'{ADMINISTRATOR}' role's to change; leave them as they are or ask an "
            "administrator.",
            **members,
        )


def _credentials_of_upstream(c: Change) -> bool:
    """Does `c` set or change the province's credentials of an upstream, or where they are
    sent (the token URL, or the base URL a relative token URL hangs on)? Whoever may
    change that may have the secret sent to an address of theirs."""
    if c.kind != "upstream" or c.op == "delete":
        return False
    before, after = c.before or {}, c.after or {}
    # A client certificate for mutual TLS is a credential of the province too.
    authenticated = any(
        (side.get("auth") or {}).get("type", "none") != "none"
        or (side.get("auth") or {}).get("client_cert")
        for side in (before, after)
    )
    if not authenticated:
        return False
    return (
        c.op == "create"
        or before.get("auth") != after.get("auth")
        or (before.get("base_url") != after.get("base_url"))
    )


async def edit(
    editor: Editor, what: str, change: Edit, *, deleting: str | None = None
) -> versions.PolicyCommit:
    """One edit of the policy document as one new policy version.

    Args:
        editor: who, where, on what condition.
        what: how a refusal starts ("The client 'x' is not valid").
        change: edits the document in place; returns the path of its entity.
        deleting: the entity a delete removes, to name who still refers to it.

    Returns:
        the commit: its version (None if nothing changed) and its changes.

    Example:
        >>> await edit(editor, "The group is not valid", lambda d: d["groups"].append(g))
        PolicyCommit(version=43, changes=[...])
    """
    seen: dict[str, Any] = {}

    def run(doc: dict[str, Any]) -> None:
        seen["doc"] = doc
        seen["focus"] = change(doc)

    try:
        async with editor.sessions() as s, s.begin():
            await begin_change(s, editor.if_match)
            try:
                commit = await versions.edit_policy(
                    s,
                    run,
                    actor=editor.actor.name,
                    source=editor.actor.source,
                    comment=editor.actor.comment,
                    outbound=editor.outbound,
                )
            except (ValidationError, versions.PolicyRejected) as e:
                errors = (
                    validation_errors(e)
                    if isinstance(e, ValidationError)
                    else message_errors(str(e))
                )
                raise refused(
                    what, errors, doc=seen.get("doc"), focus=seen.get("focus"), deleting=deleting
                ) from None
            operator_may(editor.actor, commit.changes)
            if editor.dry_run:
                raise _DryRun(commit)  # leaves the transaction, which rolls back
    except _DryRun as done:
        return done.commit
    return commit


async def replace(editor: Editor, policy: PolicySet, doc: dict[str, Any]) -> versions.PolicyCommit:
    """The whole policy replaced by `policy` (parsed from `doc`), as one new version.

    Example:
        >>> await replace(editor, PolicySet.model_validate(doc), doc)
    """
    async with editor.sessions() as s, s.begin():
        await begin_change(s, editor.if_match)
        try:
            commit = await versions.commit_policy(
                s,
                policy,
                actor=editor.actor.name,
                source=editor.actor.source,
                comment=editor.actor.comment,
                outbound=editor.outbound,
            )
        except versions.PolicyRejected as e:
            raise refused("The policy is refused", message_errors(str(e)), doc=doc) from None
        operator_may(editor.actor, commit.changes)
    return commit


async def restore(editor: Editor, version: int) -> versions.PolicyCommit:
    """An earlier version restored, as a new version (history only grows).

    Raises:
        Problem: 404 for a version that never was; 422 if it fails today's checks.

    Example:
        >>> await restore(editor, 41)
    """
    try:
        async with editor.sessions() as s, s.begin():
            await begin_change(s, editor.if_match)
            if await s.get(PolicyVersion, version) is None:
                newest = await s.scalar(select(func.max(PolicyVersion.id))) or 0
                raise Problem(NOT_FOUND, f"No policy version {version}; the newest is {newest}.")
            try:
                commit = await versions.rollback(
                    s,
                    version,
                    actor=editor.actor.name,
                    comment=editor.actor.comment,
                    outbound=editor.outbound,
                )
            except versions.PolicyRejected as e:
                raise refused(
                    f"Version {version} cannot be restored", message_errors(str(e))
                ) from None
            operator_may(editor.actor, commit.changes)
            if editor.dry_run:
                raise _DryRun(commit)
    except _DryRun as done:
        return done.commit
    return commit


async def current(sessions: async_sessionmaker[AsyncSession]) -> tuple[dict[str, Any], int | None]:
    """The current policy document and its version (read first: an ETag never claims a
    newer version than the document it comes with).

    Example:
        >>> doc, version = await current(sessions)
    """
    async with sessions() as s:
        version = await s.scalar(select(func.max(PolicyVersion.id)))
        policy = await versions.current_policy(s)
    return policy_document(policy), version


async def document_at(sessions: async_sessionmaker[AsyncSession], version: int) -> dict[str, Any]:
    """The policy document as it was at `version`; 404 if there is no such version.

    Example:
        >>> (await document_at(sessions, 1))["agencies"]
    """
    async with sessions() as s:
        try:
            policy = await versions.version_policy(s, version)
        except versions.PolicyRejected as e:
            raise Problem(NOT_FOUND, str(e)) from None
    return policy_document(policy)


async def compare(sessions: async_sessionmaker[AsyncSession], old: int, new: int) -> list[Change]:
    """What changed from policy version `old` to version `new` (either may be the
    older); 404 for a version that never was.

    Example:
        >>> [c.summary for c in await compare(sessions, 41, 42)]
        ['updated service 000.00.00.G01/csdlqg-dancu/v1']
    """
    return diff_documents(await document_at(sessions, old), await document_at(sessions, new))


async def history(sessions: async_sessionmaker[AsyncSession], limit: int) -> list[PolicyVersion]:
    """The newest `limit` policy versions, newest first.

    Example:
        >>> [v.id for v in await history(sessions, 2)]
        [42, 41]
    """
    async with sessions() as s:
        return await versions.history(s, limit=limit)


async def preview(sessions: async_sessionmaker[AsyncSession], policy: PolicySet) -> list[Change]:
    """What replacing the policy with `policy` would change; nothing is committed.

    Example:
        >>> [c.summary for c in await preview(sessions, policy)]
        ['created group moi']
    """
    async with sessions() as s:
        now = await versions.current_policy(s)
    # As a commit would stamp it: mapping files edited since the last apply show too.
    return diff(now, with_mapping_digests(policy))
