"""Enterprise lookup in the national business registration database.

The national database (CSDL quốc gia về đăng ký doanh nghiệp, reached through the
national data-sharing platform) answers one question in XML over plain HTTP::

    POST <upstream>/doanh-nghiep/tra-cuu          Content-Type: application/xml
    <TraCuuDoanhNghiep>
      <MaYeuCau/> <MaSoDoanhNghiep/> [<MaDonVi/> <MaCanBo/> <MaDVC/>]
    </TraCuuDoanhNghiep>

and answers ``<KetQuaTraCuu>`` with ``MaLoi`` 0 (found: ``DoanhNghiep``, plus
``ChiNhanhTraCuu`` when a branch code was asked), 201 (not found), 202 (exists, but
the province may not see it) or 100 (malformed request). Departmental systems call the
provincial canonical form instead (schemas/business/enterprise-lookup.*.json)::

    POST /doanh-nghiep/tra-cuu   {"enterpriseCode": "0101234567"}   (or "0101234567-001")

    200 {"outcome": "found", "message": "Thành công",
         "enterprise": {"code", "name", "foreignName", "shortName",
                        "type": {"code", "name"}, "foundedOn": "yyyy-MM-dd",
                        "status": {"code": "active"|"suspended"|"dissolved"|"dissolving",
                                   "name"},
                        "headOffice": {"street", "commune", "district", "province",
                                       "provinceCode"},
                        "legalRepresentative": {"fullName", "title"},
                        "charterCapital": <integer VND>, "mainIndustry": "<VSIC>",
                        "branches": [{"code", "name", "address", "startedOn"}]},
         "requestedBranch": {...}}                       (only for a branch code)
    404 {"outcome": "not_found", "enterpriseCode", "message"}
    403 {"outcome": "not_permitted", "enterpriseCode", "message"}
    400 problem+json invalid-message          (national MaLoi 100)
    502 problem+json upstream-bad-response    (anything else the national side says),
        upstream-authentication-failed        (the national side refused our token)

The conversion is declared: ``mappings/request.yaml`` writes the XML request (MaYeuCau
shortened to 40 characters, MaDonVi from the configuration), ``mappings/answer.yaml``
reads the XML answer (lists, trimmed, empty elements absent, the echoed MaYeuCau
checked), ``mappings/response.yaml`` converts the enterprise (dates, the charter capital
as an integer, code lists in ``codes/``). The code only picks the outcome from ``MaLoi``
and the HTTP status and unwraps the requested branch (``answers.py``); ``adapter.py`` is
the configuration and the hooks. ``MaYeuCau`` is the gateway's request id (its SHA-1 when
longer than the 40 characters the national side takes); an answer that echoes another
``MaYeuCau`` is refused.

Configuration (``adapter_config``):

``agency_code``
    The unit code sent as ``MaDonVi`` (e.g. the province's registered code
    ``000.00.00.H49``). Optional: without it, the calling client's agency is sent.
``legacy_input`` / ``legacy_output`` (``tcvn3`` | ``vni``)
    For callers that still hold TCVN3 or VNI text (see `LegacyTextConfig`): the request's
    strings are decoded to Unicode NFC, and with ``legacy_output`` every string of the
    JSON answer (names, addresses, messages) is written back in that encoding.
"""

from .adapter import ADAPTER, BusinessRegistration, BusinessRegistrationConfig

__all__ = ["ADAPTER", "BusinessRegistration", "BusinessRegistrationConfig"]
