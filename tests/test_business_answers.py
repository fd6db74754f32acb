"""A provider's business answer is not its failure (issue 23, defect 1): through the real
pipeline and the national simulator, where every national service shares the `ndxp`
upstream and so its circuit breaker.

The national document exchange answers "no such document" with a SOAP fault (HTTP 500).
A burst of them must leave the other national services (the population lookup) answering,
while the platform really failing still opens the breaker, for everyone.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import yaml

from gateway.config import versions as policy_state
from gateway.conversion.sdk import Adapter, AdapterConfig, UpstreamResponse
from gateway.core.messages import OutboundRequest
from gateway.upstream.client import upstream_failed
from tests.conftest import POPULATION, REPO, Harness, add_to_policy

PROBLEM = "urn:lgsp:problem:"
DOCUMENTS = "/r1/000.00.00.G22/lien-thong-van-ban/v1"
ACCOUNT = {"X-Officer-Id": "CB-0042", "X-Procedure-Code": "1.001234"}
THRESHOLD = 5  # the default failure_threshold of the ndxp upstream


@pytest.fixture
async def national(gateway: Harness) -> dict[str, str]:
    """The gateway with the shipped document exchange service on `ndxp`, beside the
    test configuration's population lookup (also on `ndxp`); the caller's headers."""
    shipped = yaml.safe_load((REPO / "policies" / "document-exchange.yaml").read_text("utf-8"))

    def agencies(doc: dict[str, Any]) -> None:
        known = {a["code"] for a in doc["agencies"]}
        doc["agencies"].extend(a for a in shipped["agencies"] if a["code"] not in known)

    async with gateway.state.sessions() as s, s.begin():
        await policy_state.edit_policy(s, agencies, actor="test", source="test")
    [service] = shipped["services"]
    assert service["upstream"] == "ndxp"
    # Letters sent synchronously: these tests read the breaker after each answer
    # (store-and-forward is tests/test_store_and_forward.py's).
    service.pop("async_delivery", None)
    await add_to_policy(gateway, [service])
    return {"Authorization": f"Bearer {await gateway.token('motcua')}", **ACCOUNT}


async def fetch_missing(h: Harness, headers: dict[str, str], n: int) -> httpx.Response:
    return await h.http.get(
        f"{DOCUMENTS}/documents",
        params={"documentId": f"000.00.00.H49,2025/11/22,{9000 + n}/UBND-VP"},
        headers=headers,
    )


async def look_up_citizen(h: Harness, headers: dict[str, str]) -> httpx.Response:
    return await h.http.post(
        f"{POPULATION}/cong-dan/tra-cuu", json={"SoDinhDanh": "001099012345"}, headers=headers
    )


def problem(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["type"] == PROBLEM + slug, body
    return body


async def test_a_burst_of_not_found_faults_leaves_the_other_national_services_answering(
    gateway: Harness, national: dict[str, str]
) -> None:
    for n in range(3 * THRESHOLD):
        r = await fetch_missing(gateway, national, n)
        body = problem(r, 404, "no-such-record")
        assert body["error_code"] == "DocumentNotFound"
    [record] = await gateway.audit(r.headers["X-Request-Id"])
    assert (record.upstream_status, record.error_type) == (500, "no-such-record")
    assert gateway.state.upstream.breaker_states()["ndxp"] == "closed"
    # The population lookup, on the same upstream, still answers.
    r = await look_up_citizen(gateway, national)
    assert r.status_code == 200, r.text
    assert r.json()["CongDan"]["SoDinhDanh"] == "001099012345"
    # And so does the document exchange itself.
    assert problem(await fetch_missing(gateway, national, 99), 404, "no-such-record")


async def test_the_platform_really_failing_still_opens_the_breaker(
    gateway: Harness, national: dict[str, str]
) -> None:
    """A Server fault ("Lỗi hệ thống") says the platform failed: it counts, and after
    `failure_threshold` of them every national service gets a fast 503."""
    failing = {
        "to": [{"organId": "000.00.31.H49"}],
        "documentId": "FAIL-SERVER,2025/11/22,1/UBND",
        "code": {"notation": "UBND-VP"},
        "promulgation": {"date": "2025-11-22"},
        "type": {"code": "1", "name": "Thông báo"},
        "subject": "Thông báo lịch tiếp công dân",
        "signer": {"fullName": "Lê Thị Hoa"},
    }
    for _ in range(THRESHOLD):
        r = await gateway.http.post(f"{DOCUMENTS}/documents", json=failing, headers=national)
        body = problem(r, 502, "upstream-bad-response")
        assert body["soap_fault"]["code"] == "Server"
    assert gateway.state.upstream.breaker_states()["ndxp"] == "open"
    r = await look_up_citizen(gateway, national)
    body = problem(r, 503, "upstream-unavailable")
    assert body["upstream"] == "ndxp"


async def test_a_provider_answering_503_opens_the_breaker_of_its_upstream(
    gateway: Harness,
) -> None:
    """A passthrough service without an adapter: 502, 503 and 504 count by default, a
    500 does not."""
    headers = {"Authorization": f"Bearer {await gateway.token('motcua')}"}
    status = "/r1/000.00.00.H49/status/v1"
    for _ in range(2 * THRESHOLD):
        assert (await gateway.http.get(f"{status}/500", headers=headers)).status_code == 500
    assert gateway.state.upstream.breaker_states()["sim-open"] == "closed"
    for _ in range(THRESHOLD):
        assert (await gateway.http.get(f"{status}/503", headers=headers)).status_code == 503
    problem(await gateway.http.get(f"{status}/200", headers=headers), 503, "upstream-unavailable")


class _Judging(Adapter[AdapterConfig]):
    name = "judging-test"
    VERSION = "1.0.0"

    def __init__(self, verdict: bool | Exception | None) -> None:
        super().__init__(AdapterConfig())
        self.verdict = verdict
        self.asked = 0

    def upstream_failed(self, answer: UpstreamResponse, outbound: OutboundRequest) -> bool | None:
        self.asked += 1
        if isinstance(self.verdict, Exception):
            raise self.verdict
        return self.verdict


@pytest.mark.parametrize(
    ("status", "verdict", "failed", "asked"),
    [
        (200, True, False, 0),  # a success is never asked about
        (404, True, False, 0),
        (500, None, False, 1),  # not in the list: an answer
        (500, True, True, 1),  # the adapter knows better
        (503, None, True, 1),
        (503, False, False, 1),  # e.g. a national MaLoi "not found" sent with 503
        (503, RuntimeError("bug"), True, 1),  # a broken judge: the statuses decide
    ],
)
def test_the_adapter_judges_answers_the_statuses_may_count(
    status: int, verdict: bool | Exception | None, failed: bool, asked: int
) -> None:
    from gateway.config.runtime import DEFAULT_FAILURES

    adapter = _Judging(verdict)
    assert _Judging.judges_failures and not Adapter.judges_failures
    outbound = OutboundRequest("GET", "/x", "", _headers(), b"")

    class Service:
        adapter = "judging-test"
        failure_statuses = DEFAULT_FAILURES

    answer = UpstreamResponse(status, _headers(), b"", 0.0)
    judge = lambda a: adapter.upstream_failed(a, outbound)  # noqa: E731
    assert upstream_failed(Service(), answer, judge) is failed  # type: ignore[arg-type]
    assert adapter.asked == asked


def _headers() -> Any:
    from multidict import CIMultiDict

    return CIMultiDict()


@pytest.mark.parametrize(
    ("adapter", "config", "body", "failed"),
    [
        # The national lookups' outcomes, whatever the HTTP status they came with.
        ("population", {"agency_code": "000.00.00.H49"}, b'{"MaLoi": "201"}', False),
        ("population", {"agency_code": "000.00.00.H49"}, b'{"MaLoi": "0"}', False),
        ("population", {"agency_code": "000.00.00.H49"}, b'{"MaLoi": "999"}', None),
        ("population", {"agency_code": "000.00.00.H49"}, b"<html>Bad Gateway</html>", None),
        (
            "business_registration",
            {},
            b"<KetQuaTraCuu><MaLoi>201</MaLoi><MoTaLoi>x</MoTaLoi></KetQuaTraCuu>",
            False,
        ),
        ("business_registration", {}, b"<KetQuaTraCuu><MaLoi>100</MaLoi></KetQuaTraCuu>", None),
        ("business_registration", {}, b"Service Unavailable", None),
    ],
)
def test_national_adapters_read_a_maloi_outcome_as_an_answer(
    adapter: str, config: dict[str, Any], body: bytes, failed: bool | None
) -> None:
    from gateway.conversion.catalogue import build_adapter

    impl = build_adapter(adapter, config)
    assert impl is not None and impl.judges_failures
    answer = UpstreamResponse(503, _headers(), body, 0.0)
    outbound = OutboundRequest("POST", "/x", "", _headers(), b"")
    assert impl.upstream_failed(answer, outbound) is failed
