"""What the auditors' pages share: who may open them, the record filter read from a form
or a query string (the auditor API's own model, gateway/edge/audit_queries.py), the
record of every read (the API's `AuditRead`, naming `person:<account>`), and showing
what a caller put in the log inertly.

Every auditor page needs the "auditor" role; unmasking personal identifiers needs
"audit:unmask" beside it and a reason, both written down with the read.

Example:
    >>> inert("a\\u202eb")
    'a⟨U+202E⟩b'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError

from gateway.audit.query import VN_TZ, AuditFilter
from gateway.core.headers import REQUEST_ID_HEADER
from gateway.core.problems import Problem
from gateway.edge.audit_queries import RecordFilter
from gateway.edge.console.views import COMMENT_MAX, PREFIX, View
from gateway.store.models import AuditRead

__all__ = [
    "AUDITORS",
    "BASE",
    "FILTER_FIELDS",
    "UNMASK",
    "actor",
    "filter_link",
    "given",
    "inert",
    "local_time",
    "may_unmask",
    "parse_filter",
    "reason_of",
    "record_read",
    "short",
]

AUDITORS = ("auditor",)
UNMASK = "audit:unmask"
BASE = f"{PREFIX}/audit"
# The search form's fields, named as the auditor API's query parameters.
FILTER_FIELDS = (
    "since",
    "until",
    "agency",
    "client",
    "service",
    "officer",
    "procedure",
    "case",
    "outcome",
    "status",
    "request_id",
)
SHORT = 120  # characters of a caller's text shown in a table cell

# Bidirectional controls and other invisible format characters a caller can use to make
# text read differently from what it is (Trojan Source, CVE-2021-42574), and C0/C1 controls.
_HIDDEN = re.compile(
    "[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]"
)


def inert(value: object) -> str:
    """Text a caller chose, with every invisible or direction-changing character shown as
    its code point; the template escapes the rest (autoescape)."""
    text = "" if value is None else str(value)
    return _HIDDEN.sub(lambda m: f"⟨U+{ord(m[0]):04X}⟩", text)


def short(value: object) -> str:
    """`inert`, cut to a table cell's length, saying how long the whole is."""
    text = inert(value)
    if len(text) <= SHORT:
        return text
    return f"{text[:SHORT]}… [{len(text):,}]"


def local_time(value: object) -> str:
    """A stored time as Vietnam time, to the second (the ISO text of a dict or a datetime)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return ""
    return value.astimezone(VN_TZ).strftime("%Y-%m-%d %H:%M:%S")


def may_unmask(view: View) -> bool:
    return bool(view.found and UNMASK in view.found.account.roles)


def actor(view: View) -> str:
    assert view.found is not None
    return f"person:{view.found.account.name}"


def given(values: Mapping[str, Any]) -> dict[str, str]:
    """The filter fields the person filled in, trimmed."""
    out = {}
    for name in FILTER_FIELDS:
        value = values.get(name, "")
        if isinstance(value, str) and value.strip():
            out[name] = value.strip()
    return out


def parse_filter(values: Mapping[str, str]) -> tuple[AuditFilter, str | None]:
    """The filter, by the API's rules; an empty filter and the message when one is wrong."""
    try:
        return RecordFilter.model_validate(values).audit_filter(), None
    except Problem as p:
        return AuditFilter(), p.detail
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return AuditFilter(), f"{where}: {first['msg']}"


def filter_link(path: str, values: Mapping[str, str], **more: str) -> str:
    """`path` with the filter (and `more`) as its query string."""
    query = {**values, **{k: v for k, v in more.items() if v}}
    return f"{path}?{urlencode(query)}" if query else path


def reason_of(view: View) -> str:
    return view.field("reason").strip()[:COMMENT_MAX]


async def record_read(
    view: View,
    action: str,
    asked: Mapping[str, Any],
    *,
    records: int,
    unmasked: bool = False,
    reason: str | None = None,
) -> int:
    """Write the read down in its own transaction, before anything is shown (a read that
    cannot be recorded is not served: the exception ends the request); its id."""
    query = {**asked, **({"reason": reason} if reason else {}), "via": "console"}
    async with view.state.sessions() as s, s.begin():
        read = AuditRead(
            at=datetime.now(UTC),
            actor=actor(view),
            action=action,
            query=query,
            unmasked=unmasked,
            records=records,
            request_id=view.request.headers.get(REQUEST_ID_HEADER, "")[:128] or None,
        )
        s.add(read)
        await s.flush()
        return read.id
