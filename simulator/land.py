"""Simulated national land registry (CSDL quốc gia về đất đai): the parcel lookup, in
SOAP 1.1, behind the national platform's bearer token::

    POST /dat-dai/v1/ThuaDatService
    Content-Type: text/xml; charset=utf-8
    SOAPAction: "urn:vn:gov:tnmt:dat-dai:1.0/TraCuuThuaDat"

    <soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
      <soap:Body>
        <TraCuuThuaDat xmlns="urn:vn:gov:tnmt:dat-dai:1.0">
          <MaYeuCau>req-0001</MaYeuCau>   <MaDonVi>000.00.00.H49</MaDonVi>
          <MaTinh>01</MaTinh>  <SoToBanDo>12</SoToBanDo>  <SoThua>345</SoThua>
        </TraCuuThuaDat>
      </soap:Body>
    </soap:Envelope>

A parcel is named by province code (2 digits), map sheet and parcel number (integers).
The answer is ``<KetQuaTraCuuThuaDat>`` with the echoed ``MaYeuCau`` and ``ThuaDat``: the
area with a decimal comma (``1.250,75``), the land-use code (``MucDichSuDung``, codes of
the land law; the data holds one newer than most lists, ``TMD``), the certificate date
``dd/MM/yyyy``, the update time ``dd/MM/yyyy HH:mm:ss`` (Vietnam time) and one or several
holders (``ChuSuDung``).

Faults (HTTP 500, SOAP 1.1), the error code in ``detail/LoiNghiepVu/MaLoi``:

* ``soap:Client``, MaLoi ``201``: no such parcel;
* ``soap:Client``, MaLoi ``400``: a malformed request (an element missing or too long,
  a map sheet that is not a number, a wrong SOAPAction, not SOAP 1.1);
* ``soap:Server``, MaLoi ``500``: the registry failing, for map sheet ``9999`` (how tests
  make the provider fail);
* HTTP 401 without a valid token.

The parcels in ``data/parcels.json`` are fictional. Tests read ``app[LAND_REGISTRY]``:
``.lookups`` holds what each lookup carried (headers and body; ``raw`` and ``answer``,
the exact bytes received and answered).
"""

import importlib.resources
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from lxml import etree

from simulator.business import XmlRejected, element_children, parse_untrusted_xml, to_xml_bytes

__all__ = [
    "ACTION",
    "LAND_NS",
    "LAND_REGISTRY",
    "LOOKUP_PATH",
    "SOAP_NS",
    "LandRegistry",
    "load_parcels",
    "setup",
]

LOOKUP_PATH = "/dat-dai/v1/ThuaDatService"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
LAND_NS = "urn:vn:gov:tnmt:dat-dai:1.0"
ACTION = f"{LAND_NS}/TraCuuThuaDat"
FAILING_MAP_SHEET = "9999"
_FIELDS = {"MaYeuCau": 40, "MaDonVi": 35, "MaTinh": 2, "SoToBanDo": 6, "SoThua": 6}
_REQUIRED = ("MaYeuCau", "MaTinh", "SoToBanDo", "SoThua")
_PROVINCE = re.compile(r"[0-9]{2}")
_NUMBER = re.compile(r"[0-9]{1,6}")


class _Fault(Exception):
    def __init__(self, code: str, error: str, message: str) -> None:
        super().__init__(message)
        self.code, self.error, self.message = code, error, message


def _q(name: str) -> str:
    return f"{{{LAND_NS}}}{name}"


def _add(parent: etree._Element, name: str, text: str) -> None:
    etree.SubElement(parent, _q(name)).text = text


def _envelope(body: etree._Element) -> bytes:
    root = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap={"soap": SOAP_NS})
    etree.SubElement(root, f"{{{SOAP_NS}}}Body").append(body)
    return to_xml_bytes(root)


def _fault_response(fault: _Fault) -> web.Response:
    element = etree.Element(f"{{{SOAP_NS}}}Fault", nsmap={"soap": SOAP_NS})
    etree.SubElement(element, "faultcode").text = f"soap:{fault.code}"
    etree.SubElement(element, "faultstring").text = fault.message
    detail = etree.SubElement(etree.SubElement(element, "detail"), _q("LoiNghiepVu"))
    _add(detail, "MaLoi", fault.error)
    _add(detail, "MoTaLoi", fault.message)
    return web.Response(status=500, body=_envelope(element), content_type="text/xml")


def load_parcels() -> dict[tuple[str, str, str], dict[str, Any]]:
    """The fictional parcels, by (province code, map sheet, parcel number)."""
    raw = importlib.resources.files("simulator").joinpath("data/parcels.json").read_bytes()
    return {(p["MaTinh"], p["SoToBanDo"], p["SoThua"]): p for p in orjson.loads(raw)}


def _lookup_request(raw: bytes, headers: Any) -> etree._Element:
    """The <TraCuuThuaDat> of a SOAP 1.1 request, or a Client fault saying what is wrong."""
    if headers.get("SOAPAction", "").strip('"') != ACTION:
        raise _Fault("Client", "400", f"SOAPAction phải là {ACTION}")
    try:
        root = parse_untrusted_xml(raw)
    except XmlRejected as e:
        raise _Fault("Client", "400", str(e)) from None
    parts = element_children(root)
    if root.tag != f"{{{SOAP_NS}}}Envelope" or not parts or parts[-1].tag != f"{{{SOAP_NS}}}Body":
        raise _Fault("Client", "400", "Yêu cầu phải là một SOAP 1.1 Envelope")
    entries = element_children(parts[-1])
    if len(entries) != 1 or entries[0].tag != _q("TraCuuThuaDat"):
        raise _Fault("Client", "400", "Thân SOAP phải là TraCuuThuaDat")
    return entries[0]


def _lookup_fields(raw: bytes, headers: Any) -> dict[str, str]:
    """The lookup's fields, or a Client fault saying what is wrong."""
    fields: dict[str, str] = {}
    for child in element_children(_lookup_request(raw, headers)):
        name = etree.QName(child).localname
        if child.tag != _q(name) or name not in _FIELDS:
            raise _Fault("Client", "400", f"Phần tử không hợp lệ: {etree.QName(child).text}")
        value = (child.text or "").strip()
        if len(value) > _FIELDS[name]:
            raise _Fault("Client", "400", f"{name} dài quá {_FIELDS[name]} ký tự")
        fields[name] = value
    for name in _REQUIRED:
        if not fields.get(name):
            raise _Fault("Client", "400", f"Thiếu {name}")
    if not _PROVINCE.fullmatch(fields["MaTinh"]):
        raise _Fault("Client", "400", "MaTinh phải gồm 2 chữ số")
    for name in ("SoToBanDo", "SoThua"):
        if not _NUMBER.fullmatch(fields[name]):
            raise _Fault("Client", "400", f"{name} phải là số")
    return fields


def _parcel_element(request_id: str, parcel: dict[str, Any]) -> etree._Element:
    answer = etree.Element(_q("KetQuaTraCuuThuaDat"), nsmap={None: LAND_NS})
    _add(answer, "MaYeuCau", request_id)
    thua = etree.SubElement(answer, _q("ThuaDat"))
    for name in ("MaTinh", "SoToBanDo", "SoThua", "DienTich", "MucDichSuDung"):
        _add(thua, name, parcel[name])
    for name in ("NgayCapGCN", "ThoiDiemCapNhat", "GhiChu"):
        if name in parcel:
            _add(thua, name, parcel[name])
    holders = etree.SubElement(thua, _q("DanhSachChuSuDung"))
    for holder in parcel["ChuSuDung"]:
        element = etree.SubElement(holders, _q("ChuSuDung"))
        for name in ("HoTen", "SoDinhDanh", "DaiDien"):
            if name in holder:
                _add(element, name, holder[name])
    return answer


@dataclass
class LandRegistry:
    parcels: dict[tuple[str, str, str], dict[str, Any]]
    is_authorised: Callable[[web.Request], bool]
    lookups: list[dict[str, Any]] = field(default_factory=list)

    async def lookup(self, request: web.Request) -> web.Response:
        if not self.is_authorised(request):
            return web.Response(status=401, text="access token không hợp lệ")
        raw = await request.read()
        seen: dict[str, Any] = {
            "headers": dict(request.headers),
            "body": raw.decode("utf-8", "replace"),
            "raw": raw,  # the exact bytes received, and below those answered
        }
        self.lookups.append(seen)
        response = self._answer(raw, request)
        assert isinstance(response.body, bytes)
        seen["answer"] = response.body
        return response

    def _answer(self, raw: bytes, request: web.Request) -> web.Response:
        try:
            fields = _lookup_fields(raw, request.headers)
            if fields["SoToBanDo"] == FAILING_MAP_SHEET:
                raise _Fault("Server", "500", "Lỗi hệ thống: không kết nối được cơ sở dữ liệu")
            key = (fields["MaTinh"], str(int(fields["SoToBanDo"])), str(int(fields["SoThua"])))
            parcel = self.parcels.get(key)
            if parcel is None:
                raise _Fault(
                    "Client", "201", "Không tìm thấy thửa đất số {2}, tờ bản đồ số {1}".format(*key)
                )
        except _Fault as fault:
            return _fault_response(fault)
        body = _envelope(_parcel_element(fields["MaYeuCau"], parcel))
        return web.Response(body=body, content_type="text/xml", charset="utf-8")


LAND_REGISTRY: web.AppKey[LandRegistry] = web.AppKey("land_registry", LandRegistry)


def setup(app: web.Application, is_authorised: Callable[[web.Request], bool]) -> None:
    """Add the land registry to ``app``; ``is_authorised`` checks the national platform's
    bearer token."""
    registry = LandRegistry(load_parcels(), is_authorised)
    app[LAND_REGISTRY] = registry
    app.router.add_post(LOOKUP_PATH, registry.lookup)
