"""Refused changes, named by field: a 422 `invalid-configuration` whose `errors` say which
field of the caller's body (or which entity of the whole document) is wrong, and why.

Pydantic names fields by location (`('timeouts', 'total_ms')`); whole-document checks
name them in their message (`clients[3].agency: no agency 'X'; services[1]...`). Both
become `{"field", "detail"}` items; errors inside the entity a change is about are named
relative to it, as the caller's body is, others by their document path and entity.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.config.diff import rate_limit_key
from gateway.core.problems import INVALID_CONFIGURATION, Problem

__all__ = ["message_errors", "parse", "refused", "validation_errors"]

M = TypeVar("M", bound=BaseModel)
FieldErrors = list[dict[str, str]]

_SECTIONS = {
    "agencies": "agency",
    "groups": "group",
    "clients": "client",
    "upstreams": "upstream",
    "services": "service",
    "rate_limits": "rate limit",
}
_DOC_PATH = r"(?:agencies|groups|clients|upstreams|services|rate_limits)(?:\[\d+\][\w.\[\]-]*)?"
_DOC_ITEM = re.compile(rf"^({_DOC_PATH}): (.+)$", re.S)
_DOC_SPLIT = re.compile(rf"; (?={_DOC_PATH}: )")
_ENTITY = re.compile(r"^(\w+)\[(\d+)\]")
# Pydantic names the member of a union it tried (`int`, `literal['latest']`); not a field.
_UNION_TAGS = frozenset({"int", "str", "float", "bool", "none", "list", "dict"})


def _field_path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS or re.search(r"[^\w-]", part):
            continue
        else:
            out += ("." if out else "") + part
    return out


def message_errors(message: str) -> FieldErrors:
    """Split a whole-document message ("clients[3].agency: no agency 'X'; services[1]...")
    into one error per field it names.

    Example:
        >>> message_errors("clients[3].agency: no agency 'X'")
        [{'field': 'clients[3].agency', 'detail': "no agency 'X'"}]
    """
    errors = []
    for part in _DOC_SPLIT.split(message):
        m = _DOC_ITEM.match(part)
        errors.append({"field": m[1], "detail": m[2]} if m else {"field": "", "detail": part})
    return errors


def validation_errors(e: ValidationError) -> FieldErrors:
    """A pydantic error as one `{"field", "detail"}` per field, with pydantic's `code`
    and its parameters when the field's own check did not word it.

    Example:
        >>> [error] = validation_errors(error_of(TimeoutsSpec, {"total_ms": 1}))
        >>> error["detail"], error["code"], error["ge"]
        ('Input should be greater than or equal to 10', 'greater_than_equal', '10')
    """
    errors: FieldErrors = []
    for err in e.errors(include_url=False):
        detail = str(err["msg"]).removeprefix("Value error, ")
        path = _field_path(err["loc"])
        if path:
            errors.append({"field": path, "detail": detail, **_code(err)})
        else:  # a check of the whole: its message names the fields
            errors += message_errors(detail)
    # One entry per field: a union's members each add their own complaint.
    merged: dict[str, dict[str, str]] = {}
    for item in errors:
        if item["field"] and item["field"] in merged:
            merged[item["field"]]["detail"] += f"; or: {item['detail']}"
        else:
            merged[item["field"] or f"#{len(merged)}"] = item
    return list(merged.values())


def _code(err: Any) -> dict[str, str]:
    """pydantic's error type as `code`, and its parameters (`ge`, `pattern`, ...), so that
    a face in another language (the console in Vietnamese) can word the message."""
    if err["type"] == "value_error":  # the field's own check: only its message says why
        return {}
    ctx = {str(k): str(v) for k, v in (err.get("ctx") or {}).items() if k not in _KEPT}
    return {"code": str(err["type"]), **ctx}


_KEPT = frozenset({"field", "detail", "code"})


def _entity_name(doc: dict[str, Any] | None, path: str) -> str | None:
    """`clients[3].agency` -> "client 'motcua'", looked up in the document it points into."""
    m = _ENTITY.match(path)
    if doc is None or m is None or m[1] not in _SECTIONS:
        return None
    items = doc.get(m[1])
    if not isinstance(items, list) or int(m[2]) >= len(items):
        return None
    item = items[int(m[2])]
    if not isinstance(item, dict):
        return None
    if m[1] == "rate_limits":
        return f"rate limit for {rate_limit_key(item.get('client'), item.get('service'))}"
    if m[1] == "services":
        key = f"{item.get('provider')}/{item.get('code')}/{item.get('version')}"
    else:
        key = str(item.get("name" if m[1] == "upstreams" else "code"))
    return f"{_SECTIONS[m[1]]} {key!r}"


def refused(
    what: str,
    errors: FieldErrors,
    *,
    doc: dict[str, Any] | None = None,
    focus: str | None = None,
    deleting: str | None = None,
) -> Problem:
    """The 422 answer to a refused change.

    Args:
        what: the sentence the detail starts with ("The client 'x' is not valid").
        errors: the fields refused and why.
        doc: the policy document the errors' paths point into, to name the entities.
        focus: the document path of the entity the change is about ("clients[5]"):
            its errors are named relative to it.
        deleting: the entity being deleted: "no agency 'X'" elsewhere becomes
            "client 'y' still refers to agency 'X'".

    Returns:
        the `invalid-configuration` problem, its `errors` one item per field.

    Example:
        >>> refused("The agency is not valid", [{"field": "name", "detail": "too long"}]).detail
        'The agency is not valid: name: too long'
    """
    named: FieldErrors = []
    for err in errors:
        field, detail = err["field"], err["detail"]
        if focus and (field == focus or field.startswith(focus + ".")):
            field = field[len(focus) + 1 :]
        elif deleting and detail.startswith("no ") and (who := _entity_name(doc, field)):
            detail = f"{who} still refers to {deleting}"
        elif who := _entity_name(doc, field):
            detail = f"{detail} (in {who})"
        named.append({**err, "field": field, "detail": detail})
    lines = "; ".join(f"{e['field']}: {e['detail']}" if e["field"] else e["detail"] for e in named)
    return Problem(INVALID_CONFIGURATION, f"{what}: {lines}", errors=named)


def parse(model: type[M], data: Any, what: str) -> M:
    """`data` as `model`, or the 422 naming each field refused.

    Example:
        >>> parse(AgencySpec, {"code": "000.00.45.H49", "name": "Sở Y tế"}, "The agency").name
        'Sở Y tế'
    """
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise refused(what, validation_errors(e)) from None
