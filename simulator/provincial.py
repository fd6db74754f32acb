"""Provincial providers: the province's own systems, which others call through its gateway.

* The one-stop-shop system (hệ thống một cửa, Trung tâm Phục vụ hành chính công) answers
  the status of a dossier it handles, ``GET /tinh/motcua/v1/ho-so/{maHoSo}/trang-thai``:
  the national public service portal asks it through the national platform.
* The Department of Justice's civil-status registry answers a birth registration by the
  child's personal identification number, ``GET /tinh/hotich/v1/khai-sinh/{soDinhDanh}``:
  the health department's system asks it (department to department).

Both answer ``{"maLoi": "0", ...}`` on success and ``{"maLoi": "201"}`` with HTTP 404 when
they hold no such record, and repeat who asked (``X-Client-Id``, ``X-Client-Agency``,
``X-Request-Id``, as the gateway forwarded them) under ``nguoiHoi``, so a test or demo can
see the accountability the gateway added. They trust the gateway in front of them (they
check no token: the gateway authenticated and authorised the caller). Records are
fictional.
"""

from collections.abc import Mapping
from typing import Any

from aiohttp import web

DOSSIER_STATUS_PATH = "/tinh/motcua/v1/ho-so/{maHoSo}/trang-thai"
BIRTH_PATH = "/tinh/hotich/v1/khai-sinh/{soDinhDanh}"

DOSSIERS: Mapping[str, dict[str, Any]] = {
    "000.00.31.H49-251122-0001": {
        "maTTHC": "1.001612",
        "tenTTHC": "Đăng ký khai sinh",
        "trangThai": 3,
        "tenTrangThai": "Đủ điều kiện giải quyết",
        "ngayTiepNhan": "20251122083000",
        "ngayHenTra": "20251127",
    },
    "000.00.31.H49-251123-0002": {
        "maTTHC": "2.000488",
        "tenTTHC": "Cấp giấy chứng nhận đăng ký hộ kinh doanh",
        "trangThai": 4,
        "tenTrangThai": "Đã hoàn thành",
        "ngayTiepNhan": "20251123091500",
        "ngayHenTra": "20251126",
    },
}
"""The one-stop-shop's dossiers by dossier number (sample numbers)."""

BIRTHS: Mapping[str, dict[str, Any]] = {
    "049225000123": {
        "hoVaTen": "Nguyễn Minh An",
        "ngaySinh": "2025-10-02",
        "gioiTinh": "Nam",
        "noiDangKy": "UBND phường Hải Châu",
        "soDangKy": "123/2025",
    },
}
"""The civil-status registry's birth registrations by the child's personal number."""

_ASKED_BY = ("X-Client-Id", "X-Client-Agency", "X-Request-Id")


def _who(headers: Mapping[str, str]) -> dict[str, str | None]:
    return {name: headers.get(name) for name in _ASKED_BY}


def _not_found(what: str, headers: Mapping[str, str]) -> web.Response:
    body = {"maLoi": "201", "thongBao": f"Không tìm thấy {what}", "nguoiHoi": _who(headers)}
    return web.json_response(body, status=404)


async def _dossier_status(request: web.Request) -> web.Response:
    number = request.match_info["maHoSo"]
    dossier = DOSSIERS.get(number)
    if dossier is None:
        return _not_found("hồ sơ", request.headers)
    body = {"maLoi": "0", "maHoSo": number, **dossier, "nguoiHoi": _who(request.headers)}
    return web.json_response(body)


async def _birth(request: web.Request) -> web.Response:
    number = request.match_info["soDinhDanh"]
    birth = BIRTHS.get(number)
    if birth is None:
        return _not_found("đăng ký khai sinh", request.headers)
    body = {"maLoi": "0", "soDinhDanh": number, **birth, "nguoiHoi": _who(request.headers)}
    return web.json_response(body)


def setup(app: web.Application) -> None:
    """Add the provincial providers' endpoints to the simulator."""
    app.router.add_get(DOSSIER_STATUS_PATH, _dossier_status)
    app.router.add_get(BIRTH_PATH, _birth)
