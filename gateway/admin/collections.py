"""One kind of entity of the policy document (agencies, clients, services...): read,
created or replaced, merge-patched and deleted, each change one new policy version.

A `Collection` says where the entities are (`section`), what they are called, their
model, and the fields that name one (`keys`). An entity is addressed by its key; a body
may leave its key fields out, and one that names another entity is refused (renaming is
a delete and a create).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.admin import edits
from gateway.admin.refusals import parse, refused
from gateway.config.diff import rate_limit_key
from gateway.config.policy import (
    AgencySpec,
    ClientSpec,
    GroupSpec,
    JobSpec,
    RateLimitSpec,
    ServiceSpec,
    TopicSpec,
    UpstreamSpec,
)
from gateway.config.versions import PolicyCommit
from gateway.core.problems import NOT_FOUND, Problem

__all__ = [
    "AGENCIES",
    "CLIENTS",
    "GROUPS",
    "JOBS",
    "RATE_LIMITS",
    "SERVICES",
    "TOPICS",
    "UPSTREAMS",
    "Collection",
    "Key",
    "merge_patch",
]

Key = tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class Collection:
    """A section of the policy document, and how its entities are named."""

    section: str
    label: str  # "agency", "rate limit"
    model: type[BaseModel]
    keys: tuple[str, ...]  # the fields that name an entity
    optional_keys: bool = False  # some key fields may be absent (a rate limit's)

    def name(self, key: Key) -> str:
        """ "client 'motcua'", "service '000.00.00.G01/csdlqg-dancu/v1'",
        "rate limit for client his on 000.00.45.H49/ho-so/v1"."""
        if self.optional_keys:
            return f"{self.label} for {rate_limit_key(*key)}"
        return f"{self.label} {'/'.join(k or '' for k in key)!r}"

    def find(self, doc: dict[str, Any], key: Key) -> int | None:
        for i, item in enumerate(doc[self.section]):
            if tuple(item.get(k) for k in self.keys) == key:
                return i
        return None

    def missing(self, key: Key) -> Problem:
        return Problem(NOT_FOUND, f"No {self.name(key)}.")

    def with_keys(self, body: dict[str, Any], key: Key, named_in: str) -> dict[str, Any]:
        """The body with its key fields: absent ones taken from the address, differing
        ones refused. `named_in` says where the address is ("path", "query")."""
        errors = [
            {
                "field": k,
                "detail": f"the {named_in} names "
                f"{'no ' + k if v is None else repr(v)} but the body {body[k]!r}; an entity is "
                "renamed by deleting it and creating the new one",
            }
            for k, v in zip(self.keys, key, strict=True)
            if k in body and body[k] != v
        ]
        if errors:
            raise refused(f"The {self.name(key)} is not valid", errors)
        return {**body, **{k: v for k, v in zip(self.keys, key, strict=True) if v is not None}}


AGENCIES = Collection("agencies", "agency", AgencySpec, ("code",))
GROUPS = Collection("groups", "group", GroupSpec, ("code",))
CLIENTS = Collection("clients", "client", ClientSpec, ("code",))
UPSTREAMS = Collection("upstreams", "upstream", UpstreamSpec, ("name",))
SERVICES = Collection("services", "service", ServiceSpec, ("provider", "code", "version"))
TOPICS = Collection("topics", "topic", TopicSpec, ("code",))
JOBS = Collection("jobs", "scheduled job", JobSpec, ("code",))
RATE_LIMITS = Collection(
    "rate_limits", "rate limit", RateLimitSpec, ("client", "service"), optional_keys=True
)


async def read_all(
    sessions: async_sessionmaker[AsyncSession], collection: Collection
) -> tuple[list[dict[str, Any]], int | None]:
    """Every entity of the collection, and the policy version they are at.

    Example:
        >>> items, version = await read_all(sessions, CLIENTS)
    """
    doc, version = await edits.current(sessions)
    return doc[collection.section], version


async def read_one(
    sessions: async_sessionmaker[AsyncSession], collection: Collection, key: Key
) -> tuple[dict[str, Any], int | None]:
    """One entity, as in the policy document, and the policy version; 404 if none.

    Example:
        >>> item, version = await read_one(sessions, CLIENTS, ("motcua",))
    """
    doc, version = await edits.current(sessions)
    i = collection.find(doc, key)
    if i is None:
        raise collection.missing(key)
    return doc[collection.section][i], version


async def put(
    editor: edits.Editor,
    collection: Collection,
    key: Key,
    body: dict[str, Any],
    *,
    named_in: str = "address",
) -> PolicyCommit:
    """Create or replace the entity `key` names with `body`.

    Example:
        >>> await put(editor, AGENCIES, ("000.00.45.H49",), {"name": "Sở Y tế"})
    """
    what = f"The {collection.name(key)} is not valid"
    body = collection.with_keys(body, key, named_in)
    item = parse(collection.model, body, what).model_dump(mode="json", exclude_none=True)

    def replace(doc: dict[str, Any]) -> str:
        items = doc[collection.section]
        i = collection.find(doc, key)
        if i is None:
            items.append(item)
            i = len(items) - 1
        else:
            items[i] = item
        return f"{collection.section}[{i}]"

    return await edits.edit(editor, what, replace)


async def patch(
    editor: edits.Editor,
    collection: Collection,
    key: Key,
    body: dict[str, Any],
    *,
    named_in: str = "address",
) -> PolicyCommit:
    """Merge `body` (RFC 7396) into the entity `key` names; 404 if there is none.

    Example:
        >>> await patch(editor, SERVICES, key, {"timeouts": {"total_ms": 20000}})
    """
    what = f"The {collection.name(key)} is not valid"
    changes = collection.with_keys(body, key, named_in)

    def merge(doc: dict[str, Any]) -> str:
        i = collection.find(doc, key)
        if i is None:
            raise collection.missing(key)
        merged = merge_patch(copy.deepcopy(doc[collection.section][i]), changes)
        spec = parse(collection.model, merged, what)
        doc[collection.section][i] = spec.model_dump(mode="json", exclude_none=True)
        return f"{collection.section}[{i}]"

    return await edits.edit(editor, what, merge)


async def delete(editor: edits.Editor, collection: Collection, key: Key) -> PolicyCommit:
    """Delete the entity `key` names; refused (422) while others refer to it.

    Example:
        >>> await delete(editor, GROUPS, ("y-te",))
    """
    name = collection.name(key)

    def remove(doc: dict[str, Any]) -> None:
        i = collection.find(doc, key)
        if i is None:
            raise collection.missing(key)
        del doc[collection.section][i]

    return await edits.edit(editor, f"The {name} cannot be deleted", remove, deleting=name)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge, null removes, anything else replaces.

    Example:
        >>> merge_patch({"a": 1, "b": {"c": 2}}, {"a": None, "b": {"d": 3}})
        {'b': {'c': 2, 'd': 3}}
    """
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result
