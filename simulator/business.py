"""Simulated national business registration database (CSDL quốc gia về đăng ký doanh nghiệp).

It answers enterprise lookups by enterprise code, in XML over plain HTTP (no SOAP),
behind the national platform's bearer token::

    POST /dkdn/v1/doanh-nghiep/tra-cuu
    Content-Type: application/xml

    <TraCuuDoanhNghiep>
      <MaYeuCau>req-0001</MaYeuCau>
      <MaSoDoanhNghiep>0101234567</MaSoDoanhNghiep>
    </TraCuuDoanhNghiep>

``MaSoDoanhNghiep`` is a 10-digit enterprise code, or a branch code (``-NNN`` added):
a branch code answers with the parent enterprise, the branch in ``ChiNhanhTraCuu`` and
a ``MoTaLoi`` that says so. Optional accountability elements ``MaDonVi`` (35),
``MaCanBo`` (20) and ``MaDVC`` (20) are checked for length; ``MaYeuCau`` (40) is
echoed back. Any other element is refused.

The answer is ``<KetQuaTraCuu>`` with ``MaYeuCau``, ``MaLoi``, ``MoTaLoi`` and, when
found, ``DoanhNghiep``. ``MaLoi``: ``0`` found (HTTP 200), ``100`` malformed request
(400; 415 for a body that is not XML by its Content-Type), ``201`` not found (404),
``202`` the enterprise exists but this caller may not see it (403, ``"HanChe": true``
in the data), ``401`` missing, unknown or expired access token (401). The codes are
this simulator's convention, shaped like the population database's.

Dates are ``dd/MM/yyyy``. ``LoaiHinh``: ``TNHH1TV``, ``TNHH2TV``, ``CP``, ``DNTN``...
``TinhTrang``: ``1`` active, ``2`` business suspended, ``3`` dissolved, ``4`` being
dissolved. ``NganhNgheChinh`` is a VSIC code. Addresses are kept as registered, so
older records name a district (``QuanHuyen``) and records registered after the 2025
reform leave it empty. The enterprises in ``data/enterprises.json`` are fictional.

Requests with a DOCTYPE are refused: no DTD, no entity, no network access, ever.
"""

import importlib.resources
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web
from lxml import etree

LOOKUP_PATH = "/dkdn/v1/doanh-nghiep/tra-cuu"

_ENTERPRISE_CODE = re.compile(r"[0-9]{10}")
_BRANCH_CODE = re.compile(r"([0-9]{10})-([0-9]{3})")
_PROVINCE_CODE = re.compile(r"[0-9]{2}")
_VSIC_CODE = re.compile(r"[0-9]{4,5}")
_LEGAL_FORMS = frozenset({"TNHH1TV", "TNHH2TV", "CP", "DNTN", "HD"})
_STATUSES = frozenset({"1", "2", "3", "4"})
_ADDRESS_FIELDS = ("SoNhaDuong", "XaPhuong", "QuanHuyen", "TinhThanh", "MaTinh")
_REQUEST_FIELDS = {"MaYeuCau": 40, "MaSoDoanhNghiep": 14, "MaDonVi": 35, "MaCanBo": 20, "MaDVC": 20}
_XML_CONTENT_TYPES = frozenset({"application/xml", "text/xml"})
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'

_MSG_OK = "Thành công"
_MSG_UNAUTHENTICATED = "Lỗi xác thực: access token không hợp lệ hoặc đã hết hạn"
_MSG_NOT_FOUND = "Không tìm thấy doanh nghiệp có mã số {code}"
_MSG_BRANCH_NOT_FOUND = "Không tìm thấy chi nhánh có mã số {code}"
_MSG_RESTRICTED = "Doanh nghiệp có tồn tại nhưng đơn vị không được phép khai thác thông tin"
_MSG_BRANCH = (
    "Thành công. Mã số {branch} là mã số chi nhánh; trả về thông tin doanh nghiệp chủ quản {parent}"
)


class XmlRejected(ValueError):
    """An XML body that is not well-formed, or that carries a DTD."""


def parse_untrusted_xml(raw: bytes, *, huge: bool = False) -> etree._Element:
    """Parse XML from a caller: no DTD, no entity expansion, no network; refuse DOCTYPE.

    ``huge`` lifts libxml2's 10 MB limit on a single text node (base64 attachments);
    the caller must cap the body size itself.
    """
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=huge
    )
    try:
        root = etree.fromstring(raw, parser)
    except etree.XMLSyntaxError as exc:
        raise XmlRejected(f"XML không hợp lệ: {exc}") from exc
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise XmlRejected("Không chấp nhận khai báo DOCTYPE/DTD trong yêu cầu")
    return root


def element_children(element: etree._Element) -> list[etree._Element]:
    """Child elements only: comments and processing instructions are left out."""
    return [child for child in element if isinstance(child.tag, str)]


def tag_of(element: etree._Element) -> str:
    """The element's tag, in Clark notation (``{namespace}name``) when namespaced."""
    tag = element.tag
    return tag if isinstance(tag, str) else ""


def to_xml_bytes(root: etree._Element) -> bytes:
    """UTF-8 bytes with the usual declaration (double quotes, as most systems write it)."""
    return _DECLARATION + etree.tostring(root, encoding="UTF-8", xml_declaration=False)


# --- Data ---------------------------------------------------------------------------


def _check_date(value: Any, where: str) -> None:
    try:
        datetime.strptime(str(value), "%d/%m/%Y")
    except ValueError as exc:
        raise ValueError(f"{where}: expected dd/MM/yyyy, got {value!r}") from exc


def _check_address(address: Any, where: str) -> None:
    if not isinstance(address, dict) or set(address) != set(_ADDRESS_FIELDS):
        raise ValueError(f"{where}: an address needs exactly {', '.join(_ADDRESS_FIELDS)}")
    if not _PROVINCE_CODE.fullmatch(str(address["MaTinh"])):
        raise ValueError(f"{where}: MaTinh must be a 2-digit province code")


def _check_enterprise(item: Any) -> None:
    if not isinstance(item, dict):
        raise ValueError("each enterprise must be a JSON object")
    code = str(item.get("MaSoDoanhNghiep"))
    if not _ENTERPRISE_CODE.fullmatch(code):
        raise ValueError(f"{code}: MaSoDoanhNghiep must have 10 digits")
    if item.get("LoaiHinh") not in _LEGAL_FORMS or item.get("TinhTrang") not in _STATUSES:
        raise ValueError(f"{code}: unknown LoaiHinh or TinhTrang")
    if not isinstance(item.get("VonDieuLe"), int):
        raise ValueError(f"{code}: VonDieuLe must be an integer (VND)")
    if not _VSIC_CODE.fullmatch(str(item.get("NganhNgheChinh"))):
        raise ValueError(f"{code}: NganhNgheChinh must be a VSIC code")
    _check_date(item.get("NgayThanhLap"), code)
    _check_address(item.get("DiaChiTruSo"), code)
    branches = item.get("DanhSachChiNhanh")
    if not isinstance(branches, list):
        raise ValueError(f"{code}: DanhSachChiNhanh must be a list")
    for branch in branches:
        branch_code = str(branch.get("MaSoChiNhanh"))
        match = _BRANCH_CODE.fullmatch(branch_code)
        if match is None or match.group(1) != code:
            raise ValueError(f"{code}: branch code {branch_code!r} must be {code}-NNN")
        _check_date(branch.get("NgayHoatDong"), branch_code)
        _check_address(branch.get("DiaChi"), branch_code)


def load_enterprises() -> dict[str, dict[str, Any]]:
    """The fictional enterprises of ``data/enterprises.json``, by enterprise code."""
    raw = importlib.resources.files("simulator").joinpath("data/enterprises.json").read_bytes()
    items = orjson.loads(raw)
    if not isinstance(items, list):
        raise ValueError("simulator/data/enterprises.json must hold a JSON list")
    enterprises: dict[str, dict[str, Any]] = {}
    for item in items:
        _check_enterprise(item)
        enterprises[item["MaSoDoanhNghiep"]] = item
    return enterprises


# --- Answers ------------------------------------------------------------------------


def _add_fields(parent: etree._Element, data: Mapping[str, Any]) -> None:
    """Write a record as child elements, in the data's order; lists become repeated
    ``ChiNhanh`` children (the only list in a record)."""
    for name, value in data.items():
        if name == "HanChe":
            continue
        child = etree.SubElement(parent, name)
        if isinstance(value, Mapping):
            _add_fields(child, value)
        elif isinstance(value, list):
            for item in value:
                _add_fields(etree.SubElement(child, "ChiNhanh"), item)
        else:
            child.text = str(value)


def _answer(
    status: int,
    code: str,
    message: str,
    request_id: str | None,
    enterprise: Mapping[str, Any] | None = None,
    branch: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    root = etree.Element("KetQuaTraCuu")
    if request_id is not None:
        etree.SubElement(root, "MaYeuCau").text = request_id
    etree.SubElement(root, "MaLoi").text = code
    etree.SubElement(root, "MoTaLoi").text = message
    if branch is not None:
        _add_fields(etree.SubElement(root, "ChiNhanhTraCuu"), branch)
    if enterprise is not None:
        _add_fields(etree.SubElement(root, "DoanhNghiep"), enterprise)
    return web.Response(
        body=to_xml_bytes(root),
        status=status,
        headers=headers,
        content_type="application/xml",
        charset="utf-8",
    )


class _Malformed(Exception):
    """The request breaks a rule; the message says which."""


def _read_request(root: etree._Element) -> dict[str, str]:
    if root.tag != "TraCuuDoanhNghiep":
        raise _Malformed(f"Phần tử gốc phải là TraCuuDoanhNghiep, không phải {tag_of(root)}")
    fields: dict[str, str] = {}
    for child in element_children(root):
        name = tag_of(child)
        limit = _REQUEST_FIELDS.get(name)
        if limit is None:
            raise _Malformed(f"Phần tử không được hỗ trợ: {name}")
        if name in fields:
            raise _Malformed(f"Phần tử {name} xuất hiện nhiều lần")
        if element_children(child):
            raise _Malformed(f"Phần tử {name} chỉ được chứa văn bản")
        value = (child.text or "").strip()
        if len(value) > limit:
            raise _Malformed(f"Trường {name} vượt quá độ dài tối đa {limit} ký tự")
        fields[name] = value
    return fields


@dataclass
class BusinessRegistry:
    """The business registration database of one simulator instance."""

    enterprises: dict[str, dict[str, Any]]
    is_authorised: Callable[[web.Request], bool]
    lookups: list[dict[str, Any]] = field(default_factory=list)
    """One ``{"headers": {...}, "body": "<TraCuuDoanhNghiep>..."}`` per lookup received."""

    async def lookup(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.lookups.append(
            {
                "headers": {str(k): v for k, v in request.headers.items()},
                "body": raw.decode("utf-8", errors="replace"),
            }
        )
        if not self.is_authorised(request):
            return _answer(
                401,
                "401",
                _MSG_UNAUTHENTICATED,
                None,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if request.content_type not in _XML_CONTENT_TYPES:
            return _answer(415, "100", "Content-Type phải là application/xml", None)
        try:
            root = parse_untrusted_xml(raw)
        except XmlRejected as exc:
            return _answer(400, "100", str(exc), None)
        # Echo the request id even when another part of the request is wrong.
        echoed = (
            (root.findtext("MaYeuCau") or "").strip() if root.tag == "TraCuuDoanhNghiep" else ""
        )
        request_id = echoed if 0 < len(echoed) <= _REQUEST_FIELDS["MaYeuCau"] else None
        try:
            fields = _read_request(root)
            code = fields.get("MaSoDoanhNghiep", "")
            if not code:
                raise _Malformed("Thiếu trường bắt buộc MaSoDoanhNghiep")
            branch_match = _BRANCH_CODE.fullmatch(code)
            if branch_match is None and not _ENTERPRISE_CODE.fullmatch(code):
                raise _Malformed(
                    "Trường MaSoDoanhNghiep phải gồm 10 chữ số, hoặc 10 chữ số, "
                    "dấu gạch ngang và 3 chữ số (chi nhánh)"
                )
        except _Malformed as exc:
            return _answer(400, "100", str(exc), request_id)

        parent_code = branch_match.group(1) if branch_match else code
        enterprise = self.enterprises.get(parent_code)
        if enterprise is None:
            return _answer(404, "201", _MSG_NOT_FOUND.format(code=parent_code), request_id)
        if enterprise.get("HanChe"):
            return _answer(403, "202", _MSG_RESTRICTED, request_id)
        if branch_match is None:
            return _answer(200, "0", _MSG_OK, request_id, enterprise)
        branch = next(
            (b for b in enterprise["DanhSachChiNhanh"] if b["MaSoChiNhanh"] == code), None
        )
        if branch is None:
            return _answer(404, "201", _MSG_BRANCH_NOT_FOUND.format(code=code), request_id)
        message = _MSG_BRANCH.format(branch=code, parent=parent_code)
        return _answer(200, "0", message, request_id, enterprise, branch)


BUSINESS_REGISTRY: web.AppKey[BusinessRegistry] = web.AppKey("business_registry", BusinessRegistry)
"""The app's business registration database (its data and the lookups received)."""


def setup(app: web.Application, is_authorised: Callable[[web.Request], bool]) -> None:
    """Add the business registration database to ``app``; ``is_authorised`` checks the
    national platform's bearer token."""
    registry = BusinessRegistry(load_enterprises(), is_authorised)
    app[BUSINESS_REGISTRY] = registry
    app.router.add_post(LOOKUP_PATH, registry.lookup)
