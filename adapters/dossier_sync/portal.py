"""The portal's form of a dossier: a canonical status change -> the portal's sync message
(JSON with the HoSo XML document in `data`) and back, the portal's record -> the
canonical view, and the portal's field names -> canonical pointers (to name a refused
field). Datetimes become Vietnam time here, before the mapping formats them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

import yaml
from multidict import CIMultiDict

from gateway.conversion.sdk import (
    INVALID_MESSAGE,
    Context,
    MappingError,
    Problem,
    load_code_lists,
    load_mappings,
)

VIETNAM: Final = timezone(timedelta(hours=7))

# The canonical endpoints (what departmental systems call) and the portal's.
STATUS_CHANGE: Final = "/ho-so/trang-thai"
RECORD_PREFIX: Final = "/ho-so/"
PORTAL_SYNC: Final = "/ho-so/dong-bo"

JSON_TYPE: Final = "application/json; charset=utf-8"
DOSSIER_ID: Final = re.compile(r"[0-9A-Z]+(?:\.[0-9A-Z]+)+-[0-9]{6}-[0-9]{4,6}")

_DATETIME_FIELDS: Final = ("receivedAt", "updatedAt")
# Portal fields the gateway fills in itself: a refusal of one is the gateway's to fix.
GATEWAY_FIELDS: Final = {"module": "adapter_config.module"}


class Portal:
    """The compiled mappings, status names and field names of the adapter's folder."""

    def __init__(self, folder: Path, settings: Mapping[str, Any]) -> None:
        mappings = load_mappings(folder, settings)  # agency_code and module
        self.to_portal_mapping = mappings["status_change"]
        self.hoso = mappings["hoso"]  # the XML document in the message's data
        self.from_record = mappings["portal_record"]
        codes = load_code_lists(folder)["status"]
        self.status_names = {v: k for k, v in codes.items()}  # "1" -> "received"
        self.fields = _portal_fields(folder / "mappings")
        self.fields.update(dict.fromkeys(GATEWAY_FIELDS, ""))
        names = sorted(self.fields, key=len, reverse=True)  # longest first at a position
        self.field_re = re.compile(
            r"(?<![\w/])(" + "|".join(re.escape(n) for n in names) + r")(?![\w/])"
        )

    def to_portal(
        self,
        change: Mapping[str, Any],
        context: Context | None,
    ) -> dict[str, Any]:
        """A canonical status change (text already Unicode) -> the portal's sync message,
        its `data` the HoSo XML document as a string."""
        doc = dict(change)
        for name in _DATETIME_FIELDS:
            if doc.get(name) is not None:
                doc[name] = vietnam_time(doc[name], f"/{name}")
        try:
            mapped = self.to_portal_mapping.apply(doc, context)
            hoso = self.hoso.to_xml(doc, context)
        except MappingError as e:
            raise self._refused(str(e)) from None
        if "maDonVi" not in mapped:  # neither the change's agencyCode nor the setting
            raise invalid(
                "/agencyCode",
                "is required: this service has no default agency (adapter_config.agency_code)",
            )
        return {**mapped, "data": hoso.decode("utf-8")}  # maDonVi, module, maHoSo, ngayTiepNhan

    def _refused(self, error: str) -> Problem:
        """The problem for a change the mappings refuse: a rule (its message names the
        canonical field), or text the HoSo XML cannot carry ("/HoSo/<field>: ...", named
        here by its canonical pointer)."""
        field = error.split(":", 1)[0]
        if not field.startswith("/HoSo/"):
            return Problem(
                INVALID_MESSAGE, f"The status change cannot be converted for the portal: {error}"
            )
        pointer = self.fields.get(field.strip("/"), "")
        return Problem(
            INVALID_MESSAGE,
            f"{pointer or field}: the text cannot be carried in the portal's XML ({error})",
            errors=[{"pointer": pointer, "detail": error}],
        )

    def from_portal(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """A portal sync message -> the canonical status change it carries (datetimes
        with the +07:00 offset). Raises ValueError if `data` is not a HoSo document."""
        data = message.get("data")
        if not isinstance(data, str):
            raise ValueError("the sync message has no data string")
        hoso = self.hoso.from_xml(data.encode("utf-8"))  # ValueError: not a HoSo document
        return {**self.to_portal_mapping.reverse(message), **hoso}

    def record_view(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The portal's record of a dossier (GET answer's hoSo) -> the canonical view."""
        view = self.from_record.apply(record)
        history = view.get("history")
        if not (isinstance(history, list) and history and "updatedAt" in history[-1]):
            return view
        # The latest change's time, placed after receivedAt for a reader's sake.
        latest = {"updatedAt": history[-1]["updatedAt"]}
        keys = list(view)
        at = keys.index("receivedAt") + 1 if "receivedAt" in keys else len(keys)
        return {**{k: view[k] for k in keys[:at]}, **latest, **{k: view[k] for k in keys[at:]}}


def invalid(pointer: str, detail: str) -> Problem:
    """invalid-message naming one canonical field."""
    return Problem(
        INVALID_MESSAGE,
        f"{pointer}: {detail}",
        errors=[{"pointer": pointer, "detail": detail}],
    )


def vietnam_time(value: Any, pointer: str) -> str:
    """An ISO 8601 datetime with a UTC offset as Vietnam local time, to the second
    (fractions dropped): `2025-11-22T01:30:00.5Z` -> `2025-11-22T08:30:00+07:00`."""
    if not isinstance(value, str):
        raise invalid(pointer, "must be an ISO 8601 datetime string with a UTC offset")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise invalid(pointer, f"{value!r} is not an ISO 8601 datetime") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise invalid(
            pointer, f"{value!r} has no UTC offset (add Z or +07:00): its instant is unknown"
        )
    try:
        local = moment.astimezone(VIETNAM)
    except OverflowError:
        raise invalid(pointer, f"{value!r} is out of range") from None
    return (
        f"{local.year:04d}-{local.month:02d}-{local.day:02d}"
        f"T{local.hour:02d}:{local.minute:02d}:{local.second:02d}+07:00"
    )


def json_headers(headers: CIMultiDict[str]) -> CIMultiDict[str]:
    """The forwarded headers, for a JSON request to the portal."""
    out = CIMultiDict(headers)
    for name in ("Content-Type", "Content-Length", "Content-Encoding", "Accept"):
        out.popall(name, None)
    out["Content-Type"] = JSON_TYPE
    out["Accept"] = "application/json"
    return out


def _portal_fields(folder: Path) -> dict[str, str]:
    """Portal field -> canonical pointer, read from the sync message's mappings
    (status_change.yaml, and hoso.yaml for the HoSo document): the field as the portal
    names it in its messages ("HoSo/ChuHoSo/SoDinhDanh", "maHoSo") and, when no two
    fields share it, its last segment alone ("SoDinhDanh")."""
    fields: dict[str, str] = {}
    last: dict[str, set[str]] = {}
    for file, prefix in (("status_change.yaml", ""), ("hoso.yaml", "HoSo/")):
        spec = yaml.safe_load((folder / file).read_text(encoding="utf-8"))
        for rule in spec["rules"]:
            source, target = rule.get("from"), rule.get("to")
            if not isinstance(source, str) or not isinstance(target, str):
                continue
            name = prefix + target.strip("/")
            fields[name] = source
            last.setdefault(name.rsplit("/", 1)[-1], set()).add(source)
    for name, sources in last.items():
        if len(sources) == 1:
            fields.setdefault(name, next(iter(sources)))
    return fields
