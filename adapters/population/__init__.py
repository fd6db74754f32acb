"""`population`: citizen lookup in the national population database (CSDLQG về dân cư).

The provincial canonical form (schemas/population/citizen-lookup.canonical.*.json) has
one operation, `POST /cong-dan/tra-cuu`, taking one of

    {"personalId": "001099012345"}                            12-digit personal id
    {"oldIdNumber": "201234567"}                              9-digit old ID card number
    {"fullName": "Nguyễn Văn An", "birthDate": "1999-03-15"}  or "birthDate": "1938"

The national side (docs/domain.md §3, simulated by simulator/app.py) has two endpoints under
the service's upstream path (`/csdldc/v1`): `/cong-dan/tra-cuu` by number (SoDinhDanh,
SoCMND) and `/cong-dan/tra-cuu-ho-ten` by name and birth date (HoVaTen,
NgayThangNamSinh). The adapter picks the endpoint from the fields given and fills the
accountability fields every national lookup carries: MaYeuCau = the gateway's request id
(at most 40 characters), MaDVC = the procedure code (X-Procedure-Code), MaCanBo = the
officer (X-Officer-Id), MaDonVi and MaTichHop from the configuration.

The national answer says MaLoi "0" found (CongDan, or DanhSachCongDan for a name
lookup), "201" not found, "202" exists but may not be seen. These are the provider's
business answers and reach the caller as JSON (application/json), not as problems:

    200 {"outcome": "found", "citizens": [{"personalId": ..., "fullName": ..., ...}]}
    404 {"outcome": "not_found", "message": "Không tìm thấy thông tin công dân"}
    403 {"outcome": "not_permitted", "message": "Công dân có tồn tại nhưng ..."}

Any other answer is a 502 problem naming the national MaLoi and MoTaLoi:
`upstream-authentication-failed` for MaLoi 100 (the national side refused the province's
token), `upstream-bad-response` for the rest (400, 5xx, a body that is not the national
JSON, a record the mappings cannot read, an answer to another request id).

The conversion itself is declarative: mappings/*.yaml with codes/sex.yaml. adapter.py
(the configuration and the hooks) chooses the endpoint and wraps the result; lookup.py
checks the canonical request and builds the national lookup, answers.py reads MaLoi and
the citizen records.

Configuration (`adapter_config`):

    agency_code       required: MaDonVi, the requesting agency's code as the national
                      platform knows it (the province's, e.g. "000.00.00.H49")
    integration_code  optional: MaTichHop, the integration service code the national
                      platform assigned (digits, at most 20)
    legacy_input      optional, "tcvn3" | "vni": the callers send TCVN3/VNI text (a
                      fullName), converted to Unicode NFC before the national lookup
    legacy_output     optional, "tcvn3" | "vni": the canonical answer's text is encoded
                      back for callers that cannot read Unicode
"""

from .adapter import ADAPTER, PopulationAdapter, PopulationConfig

__all__ = ["ADAPTER", "PopulationAdapter", "PopulationConfig"]
