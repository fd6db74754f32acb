"""The headers by which a caller says who is asking, on whose behalf and why, and by which
the gateway tells a provider the same: a public contract of the gateway, shared by the
pipeline, the APIs and the adapters. (The caller's system is named to providers as
`X-Client-Id` and `X-Client-Agency`, as X-Road's `X-Road-Client`.)"""

from __future__ import annotations

REQUEST_ID_HEADER = "X-Request-Id"
OFFICER_HEADER = "X-Officer-Id"  # MaCanBo
PROCEDURE_HEADER = "X-Procedure-Code"  # MaDVC
CASE_HEADER = "X-Case-Number"  # the case or dossier the call is made for
# The digest of what was asked, on the answer, so the caller can prove it (as X-Road).
REQUEST_HASH_HEADER = "X-Request-Sha256"
CLIENT_ID_HEADER = "X-Client-Id"
CLIENT_AGENCY_HEADER = "X-Client-Agency"
