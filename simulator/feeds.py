"""Simulated change feeds of the national side, for a province's scheduled pulls
(Circular 13/2017: full data or the changes since a time, current or as valid at a past
time, in bulk packages):

* the population database's residence changes (thay đổi cư trú)::

      GET /csdldc/v1/thay-doi-cu-tru?since=<time>&as_of=<date|time>&cursor=<c>&limit=<n>
      {"items": [...], "next": "<cursor>" | null, "total": <n>}

  paged by an opaque cursor (``next`` is null on the last page);

* the public service portal's dossier updates (cập nhật hồ sơ)::

      GET /dvcqg/v1/ho-so/cap-nhat?since=<time>&as_of=<date|time>&page=<p>&per_page=<n>
      {"items": [...], "page": <p>, "pages": <n>, "total": <n>}

  paged by page number (1-based; a page past the last is empty).

Both are behind the national platform's bearer token, ordered by change time then id.
``since`` (ISO 8601 time with its offset, exclusive) keeps the changes made after it;
``as_of`` (a date, the end of that day in Vietnam time, or a time) keeps what was valid
then: the latest change per citizen or dossier made at or before it. Each change carries
``ThoiDiemCapNhat``, its time (``+07:00``), which a caller keeps as its watermark.

The sample data is deterministic: 24 residence changes and 18 dossier updates, one every
seven hours from 2026-11-01 08:00 Vietnam time. Tests reach the ``ChangeFeeds`` object at
``app[FEEDS]``: ``add_residence`` appends a change, ``fail_from_page`` makes the feeds
answer 503 from that page on, ``delay_ms`` slows each page, ``gate`` holds pages back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import orjson
from aiohttp import web

__all__ = ["DOSSIER_PATH", "FEEDS", "RESIDENCE_PATH", "ChangeFeeds", "setup"]

RESIDENCE_PATH = "/csdldc/v1/thay-doi-cu-tru"
DOSSIER_PATH = "/dvcqg/v1/ho-so/cap-nhat"
VN = timezone(timedelta(hours=7))
START = datetime(2026, 11, 1, 8, 0, tzinfo=VN)
STEP = timedelta(hours=7)
MAX_PAGE = 100

_COMMUNES = (
    ("01", "Thành phố Hà Nội", "00166", "Phường Cầu Giấy"),
    ("49", "Tỉnh Quảng Nam (mẫu)", "20333", "Phường Hội An"),
    ("49", "Tỉnh Quảng Nam (mẫu)", "20194", "Phường Tam Kỳ"),
    ("79", "Thành phố Hồ Chí Minh", "26734", "Phường Bến Thành"),
)
_PEOPLE = (
    "001099012345",
    "001088004321",
    "049095001122",
    "049201003344",
    "079187005566",
    "049300007788",
)
_PROCEDURES = ("1.001612", "2.000986", "1.004227")


def _stamp(at: datetime) -> str:
    return at.astimezone(VN).isoformat(timespec="seconds")


def _residence(i: int) -> dict[str, Any]:
    province, pname, commune, cname = _COMMUNES[i % len(_COMMUNES)]
    at = START + i * STEP
    return {
        "MaThayDoi": f"TDCT-{i + 1:06d}",
        "SoDinhDanh": _PEOPLE[i % len(_PEOPLE)],
        "LoaiThayDoi": "THUONG_TRU" if i % 3 else "TAM_TRU",
        "NoiCuTruMoi": {
            "MaTinh": province,
            "TenTinh": pname,
            "MaXa": commune,
            "TenXa": cname,
            "ChiTiet": f"Số {10 + i}, đường Trần Phú",
        },
        "NgayHieuLuc": at.date().isoformat(),
        "ThoiDiemCapNhat": _stamp(at),
    }


def _dossier(i: int) -> dict[str, Any]:
    at = START + i * STEP + timedelta(minutes=30)
    n = i // 3  # three updates per dossier: received, eligible, completed
    return {
        "MaCapNhat": f"CNHS-{i + 1:06d}",
        "MaHoSo": f"000.00.31.H49-261101-{n + 1:04d}",
        "MaTTHC": _PROCEDURES[n % len(_PROCEDURES)],
        "SoDinhDanhChuHoSo": _PEOPLE[n % len(_PEOPLE)],
        "TrangThaiHoSo": (1, 3, 4)[i % 3],
        "ThoiDiemCapNhat": _stamp(at),
    }


@dataclass
class ChangeFeeds:
    """The feeds' data and the test knobs."""

    residence: list[dict[str, Any]] = field(
        default_factory=lambda: [_residence(i) for i in range(24)]
    )
    dossiers: list[dict[str, Any]] = field(default_factory=lambda: [_dossier(i) for i in range(18)])
    fail_from_page: int | None = None  # answer 503 from this page (1-based) on
    delay_ms: int = 0
    pages_served: int = 0
    # Set both: a page from `gate_from_page` on waits until `gate` is set (`waiting` counts
    # those waiting), so a test can stop the caller mid-run.
    gate_from_page: int | None = None
    gate: asyncio.Event | None = None
    waiting: int = 0

    def add_residence(self, at: datetime, number: str = "049095001122") -> dict[str, Any]:
        """Append a residence change made at `at`; the change."""
        change = _residence(len(self.residence))
        change.update(
            SoDinhDanh=number, ThoiDiemCapNhat=_stamp(at), NgayHieuLuc=at.date().isoformat()
        )
        self.residence.append(change)
        return change


FEEDS: web.AppKey[ChangeFeeds] = web.AppKey("change_feeds", ChangeFeeds)


class _Invalid(Exception):
    pass


def _time(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        if len(text) == 10:  # a date: the end of that day in Vietnam time
            return datetime.combine(date.fromisoformat(text), time.max, VN)
        at = datetime.fromisoformat(text)
    except ValueError:
        raise _Invalid(f"{name}: not an ISO 8601 date or time: {text!r}") from None
    if at.tzinfo is None:
        raise _Invalid(f"{name}: a time needs its offset (+07:00)")
    return at


def _int(text: str | None, name: str, default: int, top: int) -> int:
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= top:
        raise _Invalid(f"{name}: a whole number from 1 to {top}")
    return int(text)


def _select(items: list[dict[str, Any]], query: Any, key: str) -> list[dict[str, Any]]:
    since = _time(query.get("since"), "since")
    as_of = _time(query.get("as_of"), "as_of")
    chosen = sorted(items, key=lambda r: (datetime.fromisoformat(r["ThoiDiemCapNhat"]), r[key]))
    if as_of is not None:
        latest: dict[str, dict[str, Any]] = {}
        for r in chosen:
            if datetime.fromisoformat(r["ThoiDiemCapNhat"]) <= as_of:
                latest[r[key]] = r  # later changes replace earlier ones: what held then
        chosen = sorted(latest.values(), key=lambda r: r["ThoiDiemCapNhat"])
    if since is not None:
        chosen = [r for r in chosen if datetime.fromisoformat(r["ThoiDiemCapNhat"]) > since]
    return chosen


def _answer(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _handler(
    feeds: ChangeFeeds,
    is_authorised: Callable[[web.Request], bool],
    build: Callable[[ChangeFeeds, Any], tuple[int, dict[str, Any]]],
) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        if not is_authorised(request):
            return _answer({"MaLoi": "100", "MoTa": "Sai hoặc thiếu mã truy cập"}, 401)
        if feeds.delay_ms:
            await asyncio.sleep(feeds.delay_ms / 1000)
        try:
            page, body = build(feeds, request.query)
        except _Invalid as e:
            return _answer({"MaLoi": "400", "MoTa": str(e)}, 400)
        gate = feeds.gate
        if gate is not None and feeds.gate_from_page is not None and page >= feeds.gate_from_page:
            feeds.waiting += 1
            await gate.wait()
        if feeds.fail_from_page is not None and page >= feeds.fail_from_page:
            return _answer({"MaLoi": "503", "MoTa": "Hệ thống đang bận"}, 503)
        feeds.pages_served += 1
        return _answer(body)

    return handle


def _residence_page(feeds: ChangeFeeds, query: Any) -> tuple[int, dict[str, Any]]:
    chosen = _select(feeds.residence, query, "SoDinhDanh")
    limit = _int(query.get("limit"), "limit", 10, MAX_PAGE)
    cursor = query.get("cursor") or "0"
    if not cursor.isdigit():
        raise _Invalid("cursor: not one this feed gave")
    start = int(cursor)
    items = chosen[start : start + limit]
    more = start + limit < len(chosen)
    body = {"items": items, "next": str(start + limit) if more else None, "total": len(chosen)}
    return start // limit + 1, body


def _dossier_page(feeds: ChangeFeeds, query: Any) -> tuple[int, dict[str, Any]]:
    chosen = _select(feeds.dossiers, query, "MaHoSo")
    per_page = _int(query.get("per_page"), "per_page", 10, MAX_PAGE)
    page = _int(query.get("page"), "page", 1, 1_000_000)
    pages = max(1, -(-len(chosen) // per_page))
    items = chosen[(page - 1) * per_page : page * per_page]
    return page, {"items": items, "page": page, "pages": pages, "total": len(chosen)}


def setup(app: web.Application, is_authorised: Callable[[web.Request], bool]) -> None:
    """Add both change feeds to `app`; `is_authorised` checks the platform's bearer token."""
    feeds = ChangeFeeds()
    app[FEEDS] = feeds
    app.router.add_get(RESIDENCE_PATH, _handler(feeds, is_authorised, _residence_page))
    app.router.add_get(DOSSIER_PATH, _handler(feeds, is_authorised, _dossier_page))
