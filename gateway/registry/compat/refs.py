"""In-document references: resolving ``$ref`` pointers, and which draft reads its siblings."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from gateway.registry.compat.vocabulary import MAX_REF_CHAIN

__all__ = ["follow_refs", "resolve", "siblings_apply"]


def resolve(root: Any, ref: Any) -> tuple[Any, str] | None:
    """Resolve an in-document reference: (target, its canonical pointer), or None."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    pointer = unquote(ref[1:])
    if pointer == "":
        return root, "#"
    if not pointer.startswith("/"):
        return None  # plain-name anchors ("#foo") are not supported
    node = root
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node, "#" + pointer


def siblings_apply(root: Any) -> bool | None:
    """Do keywords beside "$ref" count? False up to draft-07, True from 2019-09, None if the
    document does not say."""
    dialect = root.get("$schema") if isinstance(root, dict) else None
    if not isinstance(dialect, str):
        return None
    if re.search(r"draft-0[3-7]", dialect):
        return False
    if "2019-09" in dialect or "2020-12" in dialect:
        return True
    return None


def follow_refs(schema: Any, root: Any) -> Any:
    """`schema` with top-level references followed, over-approximating (siblings dropped,
    unresolvable means anything) — for proving disjointness only."""
    for _ in range(MAX_REF_CHAIN):
        if not (isinstance(schema, dict) and "$ref" in schema):
            return schema
        target = resolve(root, schema["$ref"])
        if target is None:
            return True
        schema = target[0]
    return True
