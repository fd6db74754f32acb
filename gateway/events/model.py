"""An event as a publisher posts it, as the gateway delivers and serves it, and the
filters a subscription may set.

A publisher posts `{"type": ..., "key": ..., "data": {...}}`; the gateway adds the id,
the topic and the time, and delivers (and serves to pullers) exactly these bytes:

    {"id": "<uuid>", "topic": "cu-tru", "type": "residence.changed",
     "key": "001099012345", "time": "2026-12-03T07:00:00.123456Z", "data": {...}}

`key` orders events: those with one key reach each subscriber in the order published.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
)

__all__ = ["Filters", "Publication", "envelope", "matches"]

EventType = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]


class Publication(BaseModel):
    """What a publisher posts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: EventType
    key: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    data: dict[str, Any]


FieldPath = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){0,7}$")]


class Filters(BaseModel):
    """Which events of the topic a subscription receives: all when empty.

    `event_types`: only these types. `equals`: only events whose `data` holds these
    values at these dotted paths (`{"address.province": "49"}`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_types: list[EventType] = Field([], max_length=50)
    equals: dict[FieldPath, StrictStr | StrictInt | StrictBool] = Field({}, max_length=20)


def _at(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


_MISSING = object()


def matches(filters: dict[str, Any], event_type: str, data: dict[str, Any]) -> bool:
    """Whether an event passes a subscription's filters (stored as `Filters` dumps them).

    Example:
        >>> matches({"equals": {"address.province": "49"}}, "moved",
        ...         {"address": {"province": "49"}})
        True
    """
    types = filters.get("event_types") or []
    if types and event_type not in types:
        return False
    for path, wanted in (filters.get("equals") or {}).items():
        found = _at(data, path)
        # True is not 1 here either: types must agree, not only values.
        if found is _MISSING or type(found) is not type(wanted) or found != wanted:
            return False
    return True


def envelope(event_id: str, topic: str, p: Publication, at: datetime) -> bytes:
    """The event as delivered and pulled: the publication with its id, topic and time.

    Example:
        >>> envelope("e1", "cu-tru", Publication(type="moved", data={}), now)[:12]
        b'{"id":"e1",'
    """
    body: dict[str, Any] = {"id": event_id, "topic": topic, "type": p.type}
    if p.key is not None:
        body["key"] = p.key
    body["time"] = at.isoformat().replace("+00:00", "Z")
    body["data"] = p.data
    return orjson.dumps(body)
