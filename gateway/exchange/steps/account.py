"""Step 6, account: the officer id, procedure code and case number the service requires
(`X-Officer-Id`, `X-Procedure-Code`, `X-Case-Number`), checked
(gateway/exchange/accountability.py) and recorded as checked."""

from __future__ import annotations

from gateway.exchange.accountability import accountability_from
from gateway.exchange.context import Exchange

__all__ = ["account"]


def account(x: Exchange) -> None:
    """Set `x.who`; 400 when a required field is missing or a field is malformed."""
    assert x.service is not None
    who = accountability_from(x.request.headers, x.service.required_fields)
    x.who = who
    x.event.officer_id, x.event.procedure_code, x.event.case_number = (
        who.officer,
        who.procedure,
        who.case,
    )
