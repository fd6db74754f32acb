"""Simulated dossier sync with the national public service portal (Cổng Dịch vụ công quốc gia).

A province's one-stop-shop system reports each administrative procedure dossier it
receives, and every status change, in JSON behind the national platform's bearer token::

    POST /dvcqg/v1/ho-so/dong-bo
    {"maDonVi": "000.00.31.H49", "module": "TTHC",
     "maHoSo": "000.00.31.H49-251122-0001", "ngayTiepNhan": "20251122083000",
     "data": "<HoSo><MaHoSo>000.00.31.H49-251122-0001</MaHoSo>...</HoSo>"}

``data`` is an XML string: ``HoSo`` with ``MaHoSo`` (must equal ``maHoSo``), ``MaTTHC``,
``TenTTHC``, ``ChuHoSo`` (``HoVaTen``, ``SoDinhDanh`` 12 digits, optional
``SoDienThoai``), ``TrangThaiHoSo`` (1 received, 2 more documents needed, 3 eligible,
4 completed), ``NgayCapNhat`` (``yyyyMMddHHmmss``), ``GhiChu`` (required with status 2:
the missing documents) and optional ``NgayHenTra`` (``yyyyMMdd``). Other elements of
``HoSo`` are kept in the stored ``data`` but not checked.

The portal answers HTTP 200 with ``{"error_code", "message", "maHoSo"}`` for success and
business errors alike; only a missing or invalid token is an HTTP 401 (error_code 100).
``error_code``: 0 success, 100 authentication, 106 wrong agency code (``maDonVi`` not
shaped like an agency code, not registered, or not the agency that first synced the
dossier), 201 dossier not found (a first sync must have status 1), 301 invalid data
(the message names the field), 302 invalid status transition. Status moves 1→2, 2→1
(resubmitted), 1→3, 2→3, 3→4; 4 is final. Repeating the latest sync (same status and
``NgayCapNhat``) succeeds without a new history entry, so a retried request is harmless.

``GET /dvcqg/v1/ho-so/{maHoSo}`` answers what the portal holds, with its status history.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from aiohttp import web
from lxml import etree

from simulator.business import XmlRejected, element_children, parse_untrusted_xml, tag_of

SYNC_PATH = "/dvcqg/v1/ho-so/dong-bo"
RECORD_PATH = "/dvcqg/v1/ho-so/{maHoSo}"

AGENCIES: Mapping[str, str] = {
    "000.00.00.H49": "Ủy ban nhân dân tỉnh (mẫu)",
    "000.00.31.H49": "Trung tâm Phục vụ hành chính công tỉnh (mẫu)",
    "000.00.12.H49": "Sở Tư pháp (mẫu)",
    "000.00.45.H49": "Sở Y tế (mẫu)",
    "000.00.31.H26": "Trung tâm Phục vụ hành chính công tỉnh bạn (mẫu)",
}
"""Agencies the simulated portal knows: agency code → name (sample codes)."""

STATUS_NAMES: Mapping[int, str] = {
    1: "Đã tiếp nhận",
    2: "Yêu cầu bổ sung hồ sơ",
    3: "Đủ điều kiện giải quyết",
    4: "Đã hoàn thành",
}
_MOVES: Mapping[int, frozenset[int]] = {
    1: frozenset({2, 3}),
    2: frozenset({1, 3}),
    3: frozenset({4}),
    4: frozenset(),
}

OK = 0
AUTHENTICATION = 100
WRONG_AGENCY = 106
NOT_FOUND = 201
INVALID_DATA = 301
INVALID_TRANSITION = 302

_AGENCY_CODE = re.compile(r"[0-9A-Z]+(?:\.[0-9A-Z]+)+")
_MAX_AGENCY_CODE = 35
_DOSSIER_CODE = re.compile(r"([0-9A-Z]+(?:\.[0-9A-Z]+)+)-([0-9]{6})-([0-9]{4,6})")
_PROCEDURE_CODE = re.compile(r"[0-9]+\.[0-9]{6}(?:\.[0-9A-Z]+)*")
_PIN = re.compile(r"[0-9]{12}")
_PHONE = re.compile(r"(?:0|\+84)[0-9]{9,10}")
_TIMESTAMP = "%Y%m%d%H%M%S"
_VIETNAM = timezone(timedelta(hours=7))
_MAX_TEXT = {"MaTTHC": 50, "TenTTHC": 500, "HoVaTen": 100, "GhiChu": 2000}


class _Refused(Exception):
    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


def _invalid(message: str) -> _Refused:
    return _Refused(INVALID_DATA, f"Dữ liệu không hợp lệ: {message}")


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


def _answer(error_code: int, message: str, dossier_code: str | None) -> web.Response:
    return _json({"error_code": error_code, "message": message, "maHoSo": dossier_code})


def _unauthenticated() -> web.Response:
    return _json(
        {
            "error_code": AUTHENTICATION,
            "message": "Lỗi xác thực: access token không hợp lệ hoặc đã hết hạn",
        },
        401,
        {"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def _string(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _invalid(f"thiếu trường {name} (chuỗi ký tự)")
    return value.strip()


def _timestamp(value: str, name: str, fmt: str = _TIMESTAMP, shown: str = "yyyyMMddHHmmss") -> str:
    if len(value) != len(shown) or not value.isascii() or not value.isdigit():
        raise _invalid(f"trường {name} phải có dạng {shown}")
    try:
        datetime.strptime(value, fmt)
    except ValueError:
        raise _invalid(f"trường {name} phải có dạng {shown}") from None
    return value


def _xml_text(parent: etree._Element, name: str, where: str, *, required: bool = True) -> str:
    child = next((c for c in element_children(parent) if c.tag == name), None)
    value = "" if child is None else (child.text or "").strip()
    if required and not value:
        raise _invalid(f"thiếu trường {where}/{name} trong data")
    limit = _MAX_TEXT.get(name)
    if limit is not None and len(value) > limit:
        raise _invalid(f"trường {where}/{name} vượt quá {limit} ký tự")
    return value


@dataclass
class _Update:
    """What one sync says about a dossier."""

    procedure_code: str
    procedure_name: str
    owner: dict[str, str | None]
    status: int
    updated_at: str
    note: str | None
    due_date: str | None


def _read_data(data: str, dossier_code: str) -> _Update:
    try:
        root = parse_untrusted_xml(data.encode("utf-8"))
    except XmlRejected as exc:
        raise _invalid(f"trường data: {exc}") from None
    if root.tag != "HoSo":
        raise _invalid(f"trường data phải có phần tử gốc HoSo, không phải {tag_of(root)}")
    if _xml_text(root, "MaHoSo", "HoSo") != dossier_code:
        raise _invalid("HoSo/MaHoSo trong data không khớp maHoSo")
    procedure_code = _xml_text(root, "MaTTHC", "HoSo")
    if not _PROCEDURE_CODE.fullmatch(procedure_code):
        raise _invalid(f"HoSo/MaTTHC '{procedure_code}' không đúng định dạng mã thủ tục")
    procedure_name = _xml_text(root, "TenTTHC", "HoSo")
    owner_element = next((c for c in element_children(root) if c.tag == "ChuHoSo"), None)
    if owner_element is None:
        raise _invalid("thiếu HoSo/ChuHoSo trong data")
    name = _xml_text(owner_element, "HoVaTen", "HoSo/ChuHoSo")
    pin = _xml_text(owner_element, "SoDinhDanh", "HoSo/ChuHoSo")
    if not _PIN.fullmatch(pin):
        raise _invalid("HoSo/ChuHoSo/SoDinhDanh phải gồm đúng 12 chữ số")
    phone = _xml_text(owner_element, "SoDienThoai", "HoSo/ChuHoSo", required=False)
    if phone and not _PHONE.fullmatch(phone):
        raise _invalid(f"HoSo/ChuHoSo/SoDienThoai '{phone}' không hợp lệ")
    status_text = _xml_text(root, "TrangThaiHoSo", "HoSo")
    if status_text not in ("1", "2", "3", "4"):
        raise _invalid(f"HoSo/TrangThaiHoSo '{status_text}' phải là 1, 2, 3 hoặc 4")
    status = int(status_text)
    updated_at = _timestamp(_xml_text(root, "NgayCapNhat", "HoSo"), "HoSo/NgayCapNhat")
    note = _xml_text(root, "GhiChu", "HoSo", required=False) or None
    if status == 2 and note is None:
        raise _invalid("HoSo/GhiChu bắt buộc khi TrangThaiHoSo là 2 (nêu giấy tờ cần bổ sung)")
    due_date = _xml_text(root, "NgayHenTra", "HoSo", required=False) or None
    if due_date is not None:
        _timestamp(due_date, "HoSo/NgayHenTra", "%Y%m%d", "yyyyMMdd")
    return _Update(
        procedure_code=procedure_code,
        procedure_name=procedure_name,
        owner={"hoVaTen": name, "soDinhDanh": pin, "soDienThoai": phone or None},
        status=status,
        updated_at=updated_at,
        note=note,
        due_date=due_date,
    )


@dataclass
class DossierPortal:
    """The national public service portal's dossier store of one simulator instance."""

    is_authorised: Callable[[web.Request], bool]
    agencies: dict[str, str] = field(default_factory=lambda: dict(AGENCIES))
    dossiers: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def sync(self, request: web.Request) -> web.Response:
        if not self.is_authorised(request):
            return _unauthenticated()
        raw = await request.read()
        dossier_code: str | None = None
        try:
            try:
                body: Any = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
            if not isinstance(body, dict):
                raise _invalid("nội dung yêu cầu phải là một đối tượng JSON")
            if isinstance(body.get("maHoSo"), str):
                dossier_code = body["maHoSo"]
            self._sync(body)
        except _Refused as refused:
            return _answer(refused.error_code, refused.message, dossier_code)
        return _answer(OK, "Thành công", dossier_code)

    def _sync(self, body: Mapping[str, Any]) -> None:
        agency = _string(body, "maDonVi")
        if len(agency) > _MAX_AGENCY_CODE or not _AGENCY_CODE.fullmatch(agency):
            raise _Refused(WRONG_AGENCY, f"Mã đơn vị '{agency}' không đúng định dạng")
        if agency not in self.agencies:
            raise _Refused(WRONG_AGENCY, f"Mã đơn vị '{agency}' chưa được đăng ký trên Cổng")
        module = _string(body, "module")
        if module != "TTHC":
            raise _invalid(f"trường module phải là TTHC, không phải '{module}'")
        dossier_code = _string(body, "maHoSo")
        match = _DOSSIER_CODE.fullmatch(dossier_code)
        if match is None:
            raise _invalid(
                f"trường maHoSo '{dossier_code}' phải có dạng <mã đơn vị>-<yyMMdd>-<số thứ tự>"
            )
        try:
            datetime.strptime(match.group(2), "%y%m%d")
        except ValueError:
            raise _invalid(f"trường maHoSo '{dossier_code}' có ngày yyMMdd không hợp lệ") from None
        received_at = _timestamp(_string(body, "ngayTiepNhan"), "ngayTiepNhan")
        data = body.get("data")
        if not isinstance(data, str) or not data.strip():
            raise _invalid("thiếu trường data (chuỗi XML HoSo)")
        update = _read_data(data, dossier_code)

        record = self.dossiers.get(dossier_code)
        if record is None:
            if update.status != 1:
                raise _Refused(
                    NOT_FOUND,
                    f"Không tìm thấy hồ sơ {dossier_code}: lần đồng bộ đầu tiên phải có "
                    "trạng thái 1 (đã tiếp nhận)",
                )
            record = {
                "maHoSo": dossier_code,
                "maDonVi": agency,
                "module": module,
                "ngayTiepNhan": received_at,
                "maTTHC": None,
                "tenTTHC": None,
                "chuHoSo": None,
                "trangThaiHoSo": None,
                "ngayHenTra": None,
                "lichSu": [],
            }
        else:
            if agency != record["maDonVi"]:
                raise _Refused(
                    WRONG_AGENCY,
                    f"Mã đơn vị '{agency}' không phải đơn vị đã đồng bộ hồ sơ {dossier_code} "
                    f"({record['maDonVi']})",
                )
            current: int = record["trangThaiHoSo"]
            latest = record["lichSu"][-1]
            if update.status == current and update.updated_at == latest["ngayCapNhat"]:
                return  # the same sync again: a retry, already recorded
            if update.status not in _MOVES[current]:
                raise _Refused(
                    INVALID_TRANSITION,
                    f"Không thể chuyển trạng thái hồ sơ {dossier_code} từ {current} "
                    f"({STATUS_NAMES[current]}) sang {update.status} "
                    f"({STATUS_NAMES[update.status]})",
                )
        record.update(
            {
                "maTTHC": update.procedure_code,
                "tenTTHC": update.procedure_name,
                "chuHoSo": update.owner,
                "trangThaiHoSo": update.status,
                "ngayHenTra": update.due_date,
            }
        )
        record["lichSu"].append(
            {
                "trangThaiHoSo": update.status,
                "ngayCapNhat": update.updated_at,
                "ghiChu": update.note,
                "ngayHenTra": update.due_date,
                "thoiGianDongBo": datetime.now(UTC).astimezone(_VIETNAM).strftime(_TIMESTAMP),
                "data": data,
            }
        )
        self.dossiers[dossier_code] = record

    async def record(self, request: web.Request) -> web.Response:
        if not self.is_authorised(request):
            return _unauthenticated()
        dossier_code = request.match_info["maHoSo"]
        record = self.dossiers.get(dossier_code)
        if record is None:
            return _answer(NOT_FOUND, f"Không tìm thấy hồ sơ {dossier_code}", dossier_code)
        return _json(
            {"error_code": OK, "message": "Thành công", "maHoSo": dossier_code, "hoSo": record}
        )


DOSSIER_PORTAL: web.AppKey[DossierPortal] = web.AppKey("dossier_portal", DossierPortal)
"""The app's public service portal: registered agencies and the dossiers synced."""


def setup(app: web.Application, is_authorised: Callable[[web.Request], bool]) -> None:
    """Add the public service portal's dossier sync to ``app``; ``is_authorised`` checks
    the national platform's bearer token."""
    portal = DossierPortal(is_authorised)
    app[DOSSIER_PORTAL] = portal
    app.router.add_post(SYNC_PATH, portal.sync)
    app.router.add_get(RECORD_PATH, portal.record)
