"""The shapes of the identifiers in service addresses and policies (docs/domain.md).

Agency codes follow Decision 20/2020/QĐ-TTg: groups of digits and capital letters
separated by dots, at most 35 characters. Document-exchange codes follow QCVN 102:2016
(`000.00.00.H49`). Service codes and versions are the gateway's own (`csdlqg-dancu`,
`v1`). Each shape is written once, as a pattern, and used both by the route step (as a
compiled regex) and by the policy models (as a pydantic constrained string).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

__all__ = [
    "AGENCY_CODE_RE",
    "SERVICE_CODE_RE",
    "VERSION_RE",
    "AgencyCode",
    "DocCode",
    "ServiceCode",
    "ServiceKey",
    "Version",
]

_AGENCY = r"[0-9A-Z]+(?:\.[0-9A-Z]+)*"
_SERVICE = r"[a-z0-9][a-z0-9._-]{0,63}"
_VERSION = r"v[0-9]{1,6}(?:\.[0-9]{1,6})?"  # at most 14 characters

AGENCY_CODE_RE = re.compile(rf"^{_AGENCY}$")  # at most 35 characters, checked apart
SERVICE_CODE_RE = re.compile(rf"^{_SERVICE}$")
VERSION_RE = re.compile(rf"^{_VERSION}$")

AgencyCode = Annotated[str, StringConstraints(pattern=AGENCY_CODE_RE.pattern, max_length=35)]
DocCode = Annotated[str, StringConstraints(pattern=r"^\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}$")]
ServiceCode = Annotated[str, StringConstraints(pattern=SERVICE_CODE_RE.pattern)]
Version = Annotated[str, StringConstraints(pattern=VERSION_RE.pattern)]
# A service named in one string, `provider/code/version` (rate limits, metrics labels).
ServiceKey = Annotated[str, StringConstraints(pattern=rf"^{_AGENCY}/{_SERVICE}/{_VERSION}$")]
