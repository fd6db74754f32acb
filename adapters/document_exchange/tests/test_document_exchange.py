"""The `document_exchange` adapter: provincial JSON documents and status reports, sent
through the running gateway to the national edXML document exchange (SOAP 1.1, the
simulator) and back.

End to end for every outcome the exchange has (sent, pending, fetched, not found, not
yours, status flow, invalid transitions, recalls, a document sent twice, platform
failure), legacy-encoded callers, documents with only the required fields, the SDK's
envelope spelling, odd answers from a scripted provider; round trips with hypothesis;
configuration errors that name the field; the union schemas kept equal to the
single-message ones.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import string
import unicodedata
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta, timezone
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from multidict import CIMultiDict
from pydantic import ValidationError

from adapters.document_exchange import ADAPTER, DocumentExchangeConfig
from adapters.document_exchange.adapter import FOLDER
from adapters.document_exchange.edxml import EDXML_NS, SERVICE_NS, Edxml
from gateway.config import versions as policy_state
from gateway.config.policy import ServiceSpec, load_policy_dir
from gateway.conversion.catalogue import adapter_config_errors
from gateway.conversion.mapping import soap, vnencoding
from gateway.conversion.mapping.engine import Context
from gateway.core.messages import OutboundRequest, UpstreamResponse
from gateway.core.problems import Problem
from gateway.registry.schema import compile_validator, parse
from simulator.edxml import DOCUMENT_EXCHANGE, DocumentExchange
from tests.conftest import PROVINCE_ID, REPO, Harness, add_to_policy

PROVIDER = "000.00.00.G22"
SERVICE = f"/r1/{PROVIDER}/lien-thong-van-ban"
PROVINCE = PROVINCE_ID  # 000.00.00.H49, the sender_organ_id of the shipped policy
CENTRE = "000.00.31.H49"
JUSTICE = "000.00.12.H49"
HEALTH = "000.00.45.H49"  # registered on the exchange, never a recipient here
OFFICER = {"X-Officer-Id": "CB-0042"}
PROBLEM = "urn:lgsp:problem:"
SCHEMAS = REPO / "schemas" / "documents"
VIETNAMESE = "ăâđêôơưáàảãạấầẩẫậắằẳẵặéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ"
ALPHABET = VIETNAMESE + VIETNAMESE.upper() + string.ascii_letters + string.digits + " .,-()"
PDF = b"%PDF-1.7\n\x00\x01\xfe\xff binary \xe2\x80\x9c\n%%EOF"


def validator(name: str) -> Any:
    return compile_validator(parse("JSON", (SCHEMAS / name).read_text("utf-8")))


SEND = validator("document.send.json")
STATUS = validator("document.status.json")
ANSWER = validator("document.answer.json")


def shipped_policy() -> dict[str, Any]:
    """The shipped policy, its letters sent synchronously: these tests are about the
    conversion (store-and-forward is tests/test_store_and_forward.py's)."""
    policy = dict(yaml.safe_load((REPO / "policies" / "document-exchange.yaml").read_text("utf-8")))
    for service in policy["services"]:
        service.pop("async_delivery", None)
    return policy


def variant(version: str, upstream: str = "ndxp", **config: Any) -> dict[str, Any]:
    """The shipped service under another version, with other adapter settings."""
    [shipped] = shipped_policy()["services"]
    adapter_config = {k: v for k, v in {**shipped["adapter_config"], **config}.items() if v}
    return {**shipped, "version": version, "upstream": upstream, "adapter_config": adapter_config}


@pytest.fixture
async def dx(gateway: Harness) -> Harness:
    """The gateway with the shipped service (v1, policies/document-exchange.yaml), a
    TCVN3 caller's variant (v2), a VNI caller's one answered in VNI (v3), one without a
    default organ (v4) and one misconfigured for SOAP 1.2 (v5)."""
    _TOKENS.clear()  # tokens are signed by this gateway's keys only
    policy = shipped_policy()

    def change(doc: dict[str, Any]) -> None:
        doc["agencies"].extend(policy["agencies"])

    async with gateway.state.sessions() as s, s.begin():
        await policy_state.edit_policy(s, change, actor="test", source="test")
    await add_to_policy(
        gateway,
        [
            *policy["services"],
            variant("v2", legacy_input="tcvn3"),
            variant("v3", legacy_input="vni", legacy_output="vni"),
            variant("v4", sender_organ_id=None),
            variant("v5", soap_version="1.2"),
        ],
    )
    return gateway


def exchange(h: Harness) -> DocumentExchange:
    return h.simulator[DOCUMENT_EXCHANGE]


_TOKENS: dict[str, str] = {}


async def headers(h: Harness, client: str = "motcua") -> dict[str, str]:
    """A bearer token for `client` (one per test: the `dx` fixture clears them) and the
    officer."""
    if client not in _TOKENS:
        _TOKENS[client] = await h.token(client)
    return {"Authorization": f"Bearer {_TOKENS[client]}", **OFFICER}


def document(document_id: str, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "from": {"organId": PROVINCE, "organName": "Ủy ban nhân dân tỉnh"},
        "to": [
            {"organId": CENTRE, "organName": "Trung tâm Phục vụ hành chính công tỉnh"},
            {"organId": JUSTICE, "organName": "Sở Tư pháp"},
        ],
        "documentId": document_id,
        "code": {"number": "123", "notation": "UBND-VP"},
        "promulgation": {"place": "Thành phố Huế", "date": "2025-11-22"},
        "type": {"code": "1", "name": "Công văn"},
        "subject": "Về việc triển khai kết nối Nền tảng tích hợp, chia sẻ dữ liệu cấp tỉnh",
        "content": "Đề nghị các sở, ban, ngành phối hợp thực hiện.\nTrân trọng.",
        "signer": {"fullName": "Nguyễn Văn Bình", "position": "Chủ tịch", "competence": "TM. UBND"},
        "steeringType": "0",
        "priority": "1",
        "attachments": [
            {
                "name": "123-UBND-VP.pdf",
                "contentType": "application/pdf",
                "description": "Văn bản ký số",
                "contentBase64": base64.b64encode(PDF).decode(),
            },
            {
                "name": "phụ lục.docx",
                "contentType": "application/vnd.openxmlformats-officedocument."
                "wordprocessingml.document",
                "contentBase64": base64.b64encode(bytes(range(256)) * 3).decode(),
            },
        ],
    }
    doc.update(changes)
    return doc


def doc_id(n: int, organ: str = PROVINCE) -> str:
    return f"{organ},2025/11/22,{n}/UBND-VP"


async def send(
    h: Harness, doc: dict[str, Any], version: str = "v1", client: str = "motcua"
) -> httpx.Response:
    return await h.http.post(
        f"{SERVICE}/{version}/documents", json=doc, headers=await headers(h, client)
    )


async def get(h: Harness, path: str, version: str = "v1", **params: str) -> httpx.Response:
    return await h.http.get(
        f"{SERVICE}/{version}{path}", params=params or None, headers=await headers(h)
    )


async def report(
    h: Harness, document_id: str, body: dict[str, Any], version: str = "v1"
) -> httpx.Response:
    return await h.http.post(
        f"{SERVICE}/{version}/documents/status",
        params={"documentId": document_id},
        json=body,
        headers=await headers(h),
    )


def problem(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["type"] == PROBLEM + slug, body
    return body


async def audited(h: Harness, r: httpx.Response) -> Any:
    [record] = await h.audit(r.headers["X-Request-Id"])
    assert record.status == r.status_code
    assert (record.provider_code, record.service_code) == (PROVIDER, "lien-thong-van-ban")
    assert record.officer_id == "CB-0042"
    return record


def with_ids(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as the exchange hands it back: files numbered, a list always."""
    files = [{"contentId": str(i), **f} for i, f in enumerate(doc.get("attachments", []), 1)]
    return {**doc, "attachments": files}


# == end to end: sending and fetching ====================================================


async def test_send_a_document_to_two_organs(dx: Harness) -> None:
    r = await send(dx, document(doc_id(1)))
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["documentId"] == doc_id(1)
    assert body["status"] == {"code": "01", "name": "arrived"}
    assert body["description"] == "Đã đến"
    assert body["receivedAt"].endswith("+07:00") and body["receiveId"]
    assert ANSWER.errors(r.content) == []
    record = await audited(dx, r)
    assert (record.upstream_status, record.client_code, record.error_type) == (200, "motcua", None)
    # What reached the exchange: Unicode NFC, both recipients, status 01 each.
    stored = exchange(dx).documents[doc_id(1)]
    assert stored.subject == document("")["subject"]
    assert stored.sender_id == PROVINCE and stored.code == "123/UBND-VP"
    assert stored.promulgation_date == "2025/11/22"
    assert {o: d.status for o, d in stored.deliveries.items()} == {CENTRE: "01", JUSTICE: "01"}
    trace = stored.payload[0].find(f".//{{{EDXML_NS}}}TraceHeader")
    assert trace is not None and trace.findtext(f"{{{EDXML_NS}}}OrganId") == PROVINCE


async def test_pending_then_fetched_byte_for_byte(dx: Harness) -> None:
    sent = document(doc_id(2))
    assert (await send(dx, sent)).status_code == 201
    r = await get(dx, "/documents/pending", organId=CENTRE)
    assert r.status_code == 200, r.text
    [summary] = [d for d in r.json()["documents"] if d["documentId"] == doc_id(2)]
    assert summary["from"] == {"organId": PROVINCE, "organName": "Ủy ban nhân dân tỉnh"}
    assert summary["code"] == {"number": "123", "notation": "UBND-VP"}
    assert summary["subject"] == sent["subject"]
    assert summary["status"] == {"code": "01", "name": "arrived"}
    assert r.json()["organId"] == CENTRE and ANSWER.errors(r.content) == []
    await audited(dx, r)

    r = await get(dx, "/documents", documentId=doc_id(2), organId=CENTRE)
    assert r.status_code == 200, r.text
    assert r.json() == with_ids(sent)
    files = r.json()["attachments"]
    assert base64.b64decode(files[0]["contentBase64"]) == PDF
    assert base64.b64decode(files[1]["contentBase64"]) == bytes(range(256)) * 3
    assert ANSWER.errors(r.content) == [] and SEND.errors(r.content) == []
    await audited(dx, r)
    # Fetched: no longer pending for the centre, still pending for the other recipient.
    r = await get(dx, "/documents/pending", organId=CENTRE)
    assert doc_id(2) not in {d["documentId"] for d in r.json()["documents"]}
    r = await get(dx, "/documents/pending", organId=JUSTICE)
    assert doc_id(2) in {d["documentId"] for d in r.json()["documents"]}


async def test_an_id_without_slash_in_the_path_and_with_one_refused_there(dx: Harness) -> None:
    plain_id = "VB-2025-0007,UBND tỉnh"
    assert (await send(dx, document(plain_id, to=[{"organId": CENTRE}]))).status_code == 201
    # Commas, spaces and Vietnamese letters percent-encoded in the path segment.
    r = await get(dx, f"/documents/{quote(plain_id, safe='')}")
    assert r.status_code == 200, r.text
    assert r.json()["documentId"] == plain_id
    r = await get(dx, f"/documents/{quote(plain_id, safe='')}/status")
    assert r.status_code == 200 and r.json()["recipients"][0]["organId"] == CENTRE
    # An id with '/' cannot travel in the path: the gateway refuses %2F on purpose...
    r = await get(dx, f"/documents/{quote(doc_id(1), safe='')}")
    problem(r, 400, "invalid-path")
    # ... and the query form names it instead.
    assert (await send(dx, document(doc_id(3)))).status_code == 201
    r = await get(dx, "/documents", documentId=doc_id(3), organId=JUSTICE)
    assert r.status_code == 200 and r.json()["documentId"] == doc_id(3)


async def test_pending_of_the_default_organ_is_a_list_even_when_empty(dx: Harness) -> None:
    r = await get(dx, "/documents/pending")  # organId: sender_organ_id, the province
    assert r.status_code == 200, r.text
    assert r.json() == {"organId": PROVINCE, "documents": []}
    r = await get(dx, "/documents/pending", version="v4")  # no default organ
    assert problem(r, 400, "invalid-parameter")["parameter"] == "organId"


async def test_not_found_not_permitted_unknown_organ(dx: Harness) -> None:
    r = await get(dx, "/documents", documentId=doc_id(999))
    # The platform answered: no such document (not a wrong address, "not-found").
    body = problem(r, 404, "no-such-record")
    assert body["error_code"] == "DocumentNotFound" and "Không tìm thấy văn bản" in body["detail"]
    assert (await audited(dx, r)).error_type == "no-such-record"
    r = await get(dx, "/documents/status", documentId=doc_id(999))
    problem(r, 404, "no-such-record")

    assert (await send(dx, document(doc_id(4)))).status_code == 201
    r = await get(dx, "/documents", documentId=doc_id(4), organId=HEALTH)
    body = problem(r, 403, "access-denied")
    assert body["error_code"] == "NotPermitted" and HEALTH in body["detail"]
    assert (await audited(dx, r)).error_type == "access-denied"
    # Two recipients: the platform needs to know which one is reading.
    r = await get(dx, "/documents", documentId=doc_id(4))
    body = problem(r, 400, "invalid-message")
    assert body.get("error_code") == "MissingField", body

    r = await send(dx, document(doc_id(5), to=[{"organId": "000.00.99.H49"}]))
    body = problem(r, 400, "invalid-message")
    assert body["error_code"] == "UnknownOrgan" and "000.00.99.H49" in body["detail"]
    assert body["soap_fault"]["code"] == "Client"
    r = await get(dx, "/documents/pending", organId="000.00.99.H49")
    problem(r, 400, "invalid-message")
    r = await get(dx, "/documents/pending", organId="H49")
    problem(r, 400, "invalid-parameter")


async def test_a_document_is_sent_once(dx: Harness) -> None:
    assert (await send(dx, document(doc_id(6)))).status_code == 201
    r = await send(dx, document(doc_id(6)))
    body = problem(r, 409, "conflict")
    assert body["error_code"] == "DuplicateDocument" and "đã được gửi" in body["detail"]
    await audited(dx, r)


async def test_platform_failure_is_the_providers(dx: Harness) -> None:
    r = await send(dx, document("FAIL-SERVER,2025/11/22,1/UBND"))
    body = problem(r, 502, "upstream-bad-response")
    assert body["side"] == "upstream" and body["soap_fault"]["code"] == "Server"
    assert "Lỗi hệ thống" in body["detail"]
    record = await audited(dx, r)
    assert record.upstream_status == 500


# == end to end: statuses ================================================================


async def test_status_flow_with_history(dx: Harness) -> None:
    assert (await send(dx, document(doc_id(10)))).status_code == 201
    steps = [
        ("accepted", "Đã tiếp nhận văn bản", "2025-11-22T03:00:00Z"),
        ("assigned", "Giao Phòng Kiểm soát thủ tục hành chính", "2025-11-22T10:30:00+07:00"),
        ("in_progress", "Đang xử lý", "2025-11-23T08:00:00.250+07:00"),
        ("completed", "Đã hoàn thành", "2025-11-24T01:15:09Z"),
    ]
    staff = {
        "department": "Văn phòng",
        "name": "Trần Thị Mai",
        "mobile": "0905123456",
        "email": "mai@example.vn",
    }
    for status, description, at in steps:
        body = {
            "from": {"organId": CENTRE, "organName": "Trung tâm Phục vụ hành chính công"},
            "status": status,
            "description": description,
            "at": at,
            "staff": staff,
        }
        assert STATUS.errors(orjson.dumps(body)) == []
        r = await report(dx, doc_id(10), body)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["documentId"] == doc_id(10) and answer["organId"] == CENTRE
        assert answer["status"]["name"] == status and ANSWER.errors(r.content) == []
        await audited(dx, r)
    r = await get(dx, "/documents/status", documentId=doc_id(10))
    assert r.status_code == 200, r.text
    assert ANSWER.errors(r.content) == []
    recipients = {x["organId"]: x for x in r.json()["recipients"]}
    centre = recipients[CENTRE]
    assert centre["status"] == {"code": "06", "name": "completed"}
    assert [e["status"]["code"] for e in centre["history"]] == ["01", "03", "04", "05", "06"]
    first, accepted = centre["history"][0], centre["history"][1]
    assert first["description"] == "Đã đến" and first["status"]["name"] == "arrived"
    # Converted to Vietnam time, to the second.
    assert accepted["at"] == "2025-11-22T10:00:00+07:00"
    assert centre["history"][3]["at"] == "2025-11-23T08:00:00+07:00"
    assert accepted["from"] == {"organId": CENTRE, "organName": "Trung tâm Phục vụ hành chính công"}
    assert accepted["staff"] == staff and accepted["description"] == "Đã tiếp nhận văn bản"
    assert recipients[JUSTICE]["status"] == {"code": "01", "name": "arrived"}
    assert recipients[JUSTICE]["fetched"] is False


async def test_invalid_transition_is_a_conflict_naming_both_statuses(dx: Harness) -> None:
    assert (await send(dx, document(doc_id(11)))).status_code == 201
    r = await report(dx, doc_id(11), {"from": {"organId": CENTRE}, "status": "completed"})
    body = problem(r, 409, "conflict")
    assert body["current_status"] == {"code": "01", "name": "arrived"}
    assert body["requested_status"] == {"code": "06", "name": "completed"}
    assert body["organ_id"] == CENTRE and body["error_code"] == "InvalidStatusTransition"
    assert "01 (arrived)" in body["detail"] and "06 (completed)" in body["detail"]
    assert "Không thể chuyển trạng thái" in body["detail"]  # the platform's own words
    assert (await audited(dx, r)).error_type == "conflict"
    # The sender may only ask for a recall.
    r = await report(dx, doc_id(11), {"from": {"organId": PROVINCE}, "status": "accepted"})
    assert problem(r, 409, "conflict")["requested_status"]["name"] == "accepted"
    # An organ that is neither sender nor recipient.
    r = await report(dx, doc_id(11), {"from": {"organId": HEALTH}, "status": "accepted"})
    problem(r, 403, "access-denied")


async def test_recall_requested_by_default_sender_then_rejected(dx: Harness) -> None:
    assert (await send(dx, document(doc_id(12)))).status_code == 201
    r = await report(dx, doc_id(12), {"from": {"organId": CENTRE}, "status": "accepted"})
    assert r.status_code == 200, r.text
    # No `from`: the service's organ, the province, which sent the document.
    r = await report(dx, doc_id(12), {"status": "recall_requested", "description": "Thu hồi"})
    assert r.status_code == 200, r.text
    assert r.json()["organId"] == PROVINCE
    assert r.json()["status"] == {"code": "13", "name": "recall_requested"}
    r = await report(dx, doc_id(12), {"from": {"organId": CENTRE}, "status": "recall_rejected"})
    assert r.status_code == 200, r.text
    # A rejected recall resumes where the copy was: accepted, so it may be assigned.
    r = await report(dx, doc_id(12), {"from": {"organId": CENTRE}, "status": "assigned"})
    assert r.status_code == 200, r.text
    r = await report(dx, doc_id(12), {"from": {"organId": JUSTICE}, "status": "recall_accepted"})
    assert r.status_code == 200, r.text
    r = await get(dx, "/documents/status", documentId=doc_id(12))
    codes = {
        x["organId"]: [e["status"]["code"] for e in x["history"]] for x in r.json()["recipients"]
    }
    assert codes == {CENTRE: ["01", "03", "13", "16", "04"], JUSTICE: ["01", "13", "15"]}


async def test_status_of_a_document_with_an_unconventional_id(dx: Harness) -> None:
    plain_id = "VB-2025-0042"
    assert (await send(dx, document(plain_id, to=[{"organId": CENTRE}]))).status_code == 201
    r = await report(dx, plain_id, {"from": {"organId": CENTRE}, "status": "accepted"})
    body = problem(r, 400, "invalid-message")
    assert "responseFor.organId" in body["detail"]
    assert (await audited(dx, r)).upstream_status is None  # refused before the exchange
    ok = {
        "from": {"organId": CENTRE},
        "status": "accepted",
        "responseFor": {
            "organId": PROVINCE,
            "code": "123/UBND-VP",
            "promulgationDate": "2025-11-22",
        },
    }
    r = await dx.http.post(
        f"{SERVICE}/v1/documents/{plain_id}/status", json=ok, headers=await headers(dx)
    )
    assert r.status_code == 200, r.text
    r = await report(
        dx, plain_id, {**ok, "responseFor": {"organId": JUSTICE}, "status": "assigned"}
    )
    assert problem(r, 400, "invalid-message")["error_code"] == "InvalidResponseFor"


# == end to end: what callers get wrong ==================================================


async def test_caller_mistakes(dx: Harness) -> None:
    h = await headers(dx)
    incomplete = {k: v for k, v in document(doc_id(20)).items() if k != "subject"}
    r = await dx.http.post(f"{SERVICE}/v1/documents", json=incomplete, headers=h)
    body = problem(r, 400, "invalid-message")
    assert "subject" in body["detail"]
    await audited(dx, r)
    bad_date = document(doc_id(20), promulgation={"date": "22/11/2025"})
    r = await dx.http.post(f"{SERVICE}/v1/documents", json=bad_date, headers=h)
    assert problem(r, 400, "invalid-message")["errors"][0]["pointer"] == "/promulgation/date"
    r = await report(dx, doc_id(20), {"status": "arrived"})
    problem(r, 400, "invalid-message")  # the platform sets 01 itself
    r = await dx.http.get(f"{SERVICE}/v1/documents", headers=h)
    assert problem(r, 400, "invalid-parameter")["parameter"] == "documentId"
    r = await dx.http.get(f"{SERVICE}/v1/documents/pending?organ={CENTRE}", headers=h)
    assert problem(r, 400, "invalid-parameter")["parameter"] == "organ"
    r = await dx.http.delete(f"{SERVICE}/v1/documents/VB-1", headers=h)
    assert problem(r, 405, "method-not-allowed") and r.headers["Allow"] == "GET"
    r = await dx.http.get(f"{SERVICE}/v1/documents/VB-1/history", headers=h)
    assert "Endpoints" in problem(r, 404, "not-found")["detail"]
    # The accountability the service requires, and the access it grants.
    r = await dx.http.post(
        f"{SERVICE}/v1/documents",
        json=document(doc_id(20)),
        headers={"Authorization": h["Authorization"]},
    )
    problem(r, 400, "missing-accountability-fields")
    r = await send(dx, document(doc_id(20)), client="outsider")
    problem(r, 403, "access-denied")
    assert doc_id(20) not in exchange(dx).documents
    # hotich is granted the service too.
    assert (await send(dx, document(doc_id(20)), client="hotich")).status_code == 201


async def test_attachments_over_the_platforms_limit(dx: Harness) -> None:
    big = base64.b64encode(b"\x00" * (10 * 1024 * 1024 + 1)).decode()
    files = [{"name": "lon.pdf", "contentType": "application/pdf", "contentBase64": big}]
    r = await send(dx, document(doc_id(21), attachments=files))
    body = problem(r, 413, "payload-too-large")
    assert "10 MiB" in body["detail"] and "national exchange's limit" in body["detail"]
    assert doc_id(21) not in exchange(dx).documents


async def test_a_large_file_survives_byte_for_byte(dx: Harness) -> None:
    content = hashlib.shake_256(b"van ban").digest(5 * 1024 * 1024)
    files = [
        {
            "name": "ho-so.pdf",
            "contentType": "application/pdf",
            "contentBase64": base64.b64encode(content).decode(),
        }
    ]
    assert (await send(dx, document(doc_id(22), attachments=files))).status_code == 201
    r = await get(dx, "/documents", documentId=doc_id(22), organId=CENTRE)
    assert r.status_code == 200, r.text[:500]
    assert base64.b64decode(r.json()["attachments"][0]["contentBase64"]) == content


async def test_a_file_near_the_platforms_limit_can_be_fetched(dx: Harness) -> None:
    content = hashlib.shake_256(b"ban do").digest(8 * 1024 * 1024)
    files = [
        {
            "name": "ban-do.pdf",
            "contentType": "application/pdf",
            "contentBase64": base64.b64encode(content).decode(),
        }
    ]
    assert (await send(dx, document(doc_id(23), attachments=files))).status_code == 201
    r = await get(dx, "/documents", documentId=doc_id(23), organId=CENTRE)
    assert r.status_code == 200, r.text[:500]


# == realistic messages ==================================================================


async def test_only_required_fields(dx: Harness) -> None:
    minimal = {
        "to": [{"organId": CENTRE}],
        "documentId": doc_id(30),
        "code": {"notation": "UBND-VP"},
        "promulgation": {"date": "2025-11-22"},
        "type": {"code": "1", "name": "Thông báo"},
        "subject": "Thông báo lịch tiếp công dân",
        "signer": {"fullName": "Lê Thị Hoa"},
    }
    assert SEND.errors(orjson.dumps(minimal)) == []
    r = await send(dx, minimal)
    assert r.status_code == 201, r.text
    r = await get(dx, "/documents", documentId=doc_id(30))  # one recipient: no organId needed
    assert r.status_code == 200, r.text
    # `from` came from the configuration; no files is an empty list.
    assert r.json() == {**minimal, "from": {"organId": PROVINCE}, "attachments": []}
    # Without a default organ, `from` is the caller's to give.
    r = await send(dx, {**minimal, "documentId": doc_id(31)}, version="v4")
    assert "from" in problem(r, 400, "invalid-message")["detail"]


async def test_tcvn3_caller_reaches_the_exchange_in_unicode(dx: Harness) -> None:
    subject = "về việc cấp bản sao trích lục hộ tịch"
    legacy = vnencoding.encode(subject, "tcvn3")
    assert legacy != subject
    sent = document(
        doc_id(40),
        subject=legacy,
        signer={"fullName": vnencoding.encode("Nguyễn Thị Bích", "tcvn3")},
    )
    r = await send(dx, sent, version="v2")
    assert r.status_code == 201, r.text
    stored = exchange(dx).documents[doc_id(40)]
    assert stored.subject == subject
    assert unicodedata.is_normalized("NFC", stored.subject)
    signer = stored.payload[0].find(f".//{{{EDXML_NS}}}FullName")
    assert signer is not None and signer.text == "Nguyễn Thị Bích"
    # Files are bytes, not text: untouched.
    r = await get(dx, "/documents", documentId=doc_id(40), organId=CENTRE)
    assert r.json()["attachments"][0]["contentBase64"] == sent["attachments"][0]["contentBase64"]


async def test_vni_caller_in_and_out(dx: Harness) -> None:
    subject = "Về việc chuẩn hóa dữ liệu hộ tịch"
    sent = document(doc_id(41), subject=vnencoding.encode(subject, "vni"))
    r = await send(dx, sent, version="v3")
    assert r.status_code == 201, r.text
    assert exchange(dx).documents[doc_id(41)].subject == subject
    r = await get(dx, "/documents", version="v3", documentId=doc_id(41), organId=CENTRE)
    assert r.status_code == 200, r.text
    assert r.json()["subject"] == vnencoding.encode(subject, "vni")
    assert vnencoding.decode(r.json()["signer"]["fullName"], "vni") == "Nguyễn Văn Bình"
    assert r.json()["attachments"][0]["contentBase64"] == sent["attachments"][0]["contentBase64"]


async def test_nfd_text_arrives_nfc(dx: Harness) -> None:
    subject = "Về việc hướng dẫn nghiệp vụ"
    r = await send(dx, document(doc_id(42), subject=unicodedata.normalize("NFD", subject)))
    assert r.status_code == 201, r.text
    assert exchange(dx).documents[doc_id(42)].subject == subject


async def test_a_document_in_the_sdk_spelling_is_read_too(dx: Harness) -> None:
    """Another province's system sends with edXMLEnvelope/edXMLHeader, attachments beside
    the envelope, base64 wrapped in lines: the centre reads it in the canonical form."""
    content = bytes(range(200)) * 5
    encoded = base64.b64encode(content).decode()
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    other = "000.00.00.H26"
    document_id = f"{other},2025/11/20,45/UBND-KGVX"
    body = (
        f'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns:svc="{SERVICE_NS}" xmlns:edXML="{EDXML_NS}"><soap:Body><svc:SendDocument>'
        "<edXML:edXMLEnvelope><edXML:edXMLHeader><edXML:MessageHeader>"
        f"<edXML:From><edXML:OrganId>{other}</edXML:OrganId>"
        "<edXML:OrganName>Ủy ban nhân dân tỉnh bạn</edXML:OrganName></edXML:From>"
        f"<edXML:To><edXML:OrganId>{CENTRE}</edXML:OrganId></edXML:To>"
        f"<edXML:DocumentId>{escape(document_id)}</edXML:DocumentId>"
        "<edXML:Code><edXML:CodeNumber>45</edXML:CodeNumber>"
        "<edXML:CodeNotation>UBND-KGVX</edXML:CodeNotation></edXML:Code>"
        "<edXML:PromulgationInfo><edXML:Place>Hà Nội</edXML:Place>"
        "<edXML:PromulgationDate>2025/11/20</edXML:PromulgationDate></edXML:PromulgationInfo>"
        "<edXML:DocumentType><edXML:Type>1</edXML:Type>"
        "<edXML:TypeName>Công văn</edXML:TypeName></edXML:DocumentType>"
        "<edXML:Subject>Về việc phối hợp liên thông hồ sơ</edXML:Subject>"
        "<edXML:SignerInfo><edXML:FullName>Phạm Quốc Hưng</edXML:FullName></edXML:SignerInfo>"
        "</edXML:MessageHeader></edXML:edXMLHeader></edXML:edXMLEnvelope>"
        "<edXML:AttachmentEncoded><edXML:Attachment>"
        "<edXML:ContentId>a1</edXML:ContentId><edXML:ContentType>application/pdf</edXML:ContentType>"
        "<edXML:Format>base64</edXML:Format><edXML:AttachmentName>cv.pdf</edXML:AttachmentName>"
        f"<edXML:ContentTransferEncoded>{wrapped}</edXML:ContentTransferEncoded>"
        "</edXML:Attachment></edXML:AttachmentEncoded>"
        "</svc:SendDocument></soap:Body></soap:Envelope>"
    ).encode()
    national = await national_token(dx)
    async with httpx.AsyncClient(base_url=dx.simulator_url) as sim:
        r = await sim.post(
            "/edxml/v1/soap",
            content=body,
            headers={
                "Content-Type": "text/xml; charset=utf-8",
                "SOAPAction": "SendDocument",
                "Authorization": f"Bearer {national}",
            },
        )
        assert r.status_code == 200, r.text
    r = await get(dx, "/documents", documentId=document_id, organId=CENTRE)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["from"] == {"organId": other, "organName": "Ủy ban nhân dân tỉnh bạn"}
    assert got["promulgation"] == {"place": "Hà Nội", "date": "2025-11-20"}
    assert got["code"] == {"number": "45", "notation": "UBND-KGVX"}
    [file] = got["attachments"]
    assert file["contentId"] == "a1" and file["contentBase64"] == encoded
    assert ANSWER.errors(r.content) == []


async def national_token(h: Harness) -> str:
    from tests.conftest import PROVINCE_SECRET

    async with httpx.AsyncClient(base_url=h.simulator_url) as sim:
        r = await sim.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(PROVINCE_ID, PROVINCE_SECRET),
        )
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])


# == answers the simulator does not give =================================================

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"


def _soap(body: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP11}" '
        f'xmlns:svc="{SERVICE_NS}"><soap:Body>{body}</soap:Body></soap:Envelope>'
    ).encode()


SCRIPTED: dict[str, tuple[int, str, bytes]] = {
    "garbage": (200, "text/html", "<html><body>Bảo trì hệ thống</body></html".encode()),
    "html-404": (404, "text/html", b"Not Found"),
    "wrong-element": (200, "text/xml", _soap("<svc:GetStatusResponse/>")),
    "unauthenticated": (
        401,
        "text/xml",
        _soap(
            "<soap:Fault><faultcode>soap:Client</faultcode><faultstring>Lỗi xác thực"
            "</faultstring><detail><svc:ErrorCode>Unauthenticated</svc:ErrorCode></detail>"
            "</soap:Fault>"
        ),
    ),
    "no-document-id": (
        200,
        "text/xml",
        _soap(
            "<svc:SendDocumentResponse><svc:ReceiveId>r</svc:ReceiveId></svc:SendDocumentResponse>"
        ),
    ),
    "unknown-status": (
        200,
        "text/xml",
        _soap(
            "<svc:UpdateStatusResponse><svc:DocumentId>VB-1</svc:DocumentId>"
            "<svc:OrganId>000.00.31.H49</svc:OrganId><svc:StatusCode>09</svc:StatusCode>"
            "<svc:Description>Trạng thái mới</svc:Description></svc:UpdateStatusResponse>"
        ),
    ),
}


@pytest.fixture
async def scripted(dx: Harness) -> AsyncIterator[Harness]:
    """Services whose provider answers one scripted way each."""
    received: list[web.Request] = []

    async def answer(request: web.Request) -> web.Response:
        received.append(request)
        status, content_type, body = SCRIPTED[request.match_info["case"]]
        return web.Response(status=status, body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_post("/{case}/soap", answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    upstream = {"name": "scripted", "base_url": str(server.make_url("")).rstrip("/")}
    services = []
    for i, case in enumerate(SCRIPTED, 10):
        services.append({**variant(f"v{i}", upstream="scripted"), "upstream_path": f"/{case}"})
    await add_to_policy(dx, services, [upstream])
    yield dx
    await server.close()


def scripted_version(case: str) -> str:
    return f"v{list(SCRIPTED).index(case) + 10}"


async def test_odd_answers(scripted: Harness) -> None:
    h = scripted
    for case in ("garbage", "html-404", "wrong-element", "no-document-id"):
        r = await send(h, document(doc_id(50)), version=scripted_version(case))
        body = problem(r, 502, "upstream-bad-response")
        assert body["operation"] == "SendDocument", body
        assert (await audited(h, r)).error_type == "upstream-bad-response"
    r = await send(h, document(doc_id(50)), version=scripted_version("unauthenticated"))
    problem(r, 502, "upstream-authentication-failed")
    # A status code this gateway does not know yet: the code, no name.
    r = await report(
        h,
        doc_id(50),
        {"from": {"organId": CENTRE}, "status": "accepted"},
        version=scripted_version("unknown-status"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == {"code": "09"}


async def test_a_wrong_soap_version_is_the_gateways_fault(dx: Harness) -> None:
    r = await send(dx, document(doc_id(51)), version="v5")
    body = problem(r, 500, "internal-error")
    assert body["side"] == "gateway" and "soap_version" in body["detail"]
    assert doc_id(51) not in exchange(dx).documents


# == the hooks, directly =================================================================


def adapter(**config: Any) -> Any:
    return ADAPTER(DocumentExchangeConfig.model_validate({"sender_organ_id": PROVINCE, **config}))


def outbound(method: str, path: str, query: str = "", body: Any = None) -> OutboundRequest:
    raw = b"" if body is None else orjson.dumps(body)
    return OutboundRequest(
        method, path, query, CIMultiDict({"Content-Type": "application/json"}), raw
    )


def test_request_hook_builds_a_soap_11_call() -> None:
    ctx = Context(now="2025-11-22T02:15:00+00:00")
    out = adapter().request(outbound("POST", "/documents", body=document(doc_id(60))), ctx)
    assert (out.method, out.path, out.query) == ("POST", "/soap", "")
    assert out.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert out.headers["SOAPAction"] == f'"{SERVICE_NS}/SendDocument"'
    message = soap.parse_envelope(out.body)
    assert message.version == "1.1" and message.body is not None
    assert message.body.tag == f"{{{SERVICE_NS}}}SendDocument"
    stamp = message.body.findtext(f".//{{{EDXML_NS}}}TraceHeader/{{{EDXML_NS}}}Timestamp")
    assert stamp == "2025/11/22 09:15:00"  # Vietnam time
    out = adapter().request(
        outbound(
            "POST", "/documents/status", f"documentId={quote(doc_id(60))}", {"status": "accepted"}
        ),
        ctx,
    )
    message = soap.parse_envelope(out.body)
    assert message.body is not None
    status = message.body.find(f"{{{EDXML_NS}}}Status")
    assert status is not None
    assert status.findtext(f"{{{EDXML_NS}}}Timestamp") == "2025/11/22 09:15:00"
    assert status.findtext(f"{{{EDXML_NS}}}StatusCode") == "03"
    response_for = status.find(f"{{{EDXML_NS}}}ResponseFor")
    assert response_for is not None
    assert [c.text for c in response_for] == [PROVINCE, "60/UBND-VP", "2025/11/22", doc_id(60)]


@pytest.mark.parametrize(
    ("method", "path", "query", "operation", "document_id", "organ"),
    [
        ("POST", "/documents", "", "SendDocument", None, None),
        ("POST", "/documents/", "", "SendDocument", None, None),
        ("GET", "/documents/pending", "", "GetPendingDocuments", None, PROVINCE),
        ("GET", "/documents/pending", f"organId={CENTRE}", "GetPendingDocuments", None, CENTRE),
        (
            "GET",
            "/documents",
            "documentId=a%2Cb%2F1&organId=" + CENTRE,
            "GetDocument",
            "a,b/1",
            CENTRE,
        ),
        ("GET", "/documents/a%2Cb", "", "GetDocument", "a,b", None),
        ("GET", "/documents/V%C4%83n%20b%E1%BA%A3n", "", "GetDocument", "Văn bản", None),
        ("GET", "/documents/a%2Cb/status", "", "GetStatus", "a,b", None),
        ("POST", "/documents/a%2Cb/status", "", "UpdateStatus", "a,b", None),
        ("GET", "/documents/status", "documentId=x%2F1", "GetStatus", "x/1", None),
        ("POST", "/documents/status", "documentId=x%2F1", "UpdateStatus", "x/1", None),
    ],
)
def test_routes(
    method: str, path: str, query: str, operation: str, document_id: str | None, organ: str | None
) -> None:
    route = adapter().route(method, path, query)
    assert (route.operation, route.document_id, route.organ_id) == (operation, document_id, organ)


@pytest.mark.parametrize(
    ("method", "path", "query", "status"),
    [
        ("GET", "/", "", 404),
        ("GET", "/dossiers", "", 404),
        ("GET", "/documents/a/b/c", "", 404),
        ("GET", "/documents/pending/status", "", 404),
        ("PUT", "/documents", "", 405),
        ("POST", "/documents/pending", "", 405),
        ("GET", "/documents", "documentId=a&documentId=b", 400),
        ("GET", "/documents/a", "documentId=b", 400),
        ("GET", "/documents", "documentId=", 400),
        ("GET", "/documents", "documentId=%01x", 400),
        ("GET", "/documents/%FF", "", 400),
        ("GET", "/documents", "documentId=x&organId=000.00.31.h49", 400),
    ],
)
def test_route_refusals(method: str, path: str, query: str, status: int) -> None:
    with pytest.raises(Problem) as caught:
        adapter().route(method, path, query)
    assert caught.value.status == status


def test_response_hook_answers_json_and_keeps_other_headers() -> None:
    a = adapter()
    out = a.request(outbound("GET", "/documents/pending"), Context())
    body = _soap(
        "<svc:GetPendingDocumentsResponse><svc:OrganId>000.00.00.H49</svc:OrganId>"
        "</svc:GetPendingDocumentsResponse>"
    )
    answer = UpstreamResponse(
        200, CIMultiDict({"Content-Type": "text/xml", "Date": "x"}), body, 1.0
    )
    converted = a.response(answer, out, Context())
    assert converted.status == 200
    assert converted.headers["Content-Type"] == "application/json; charset=utf-8"
    assert converted.headers["Date"] == "x"
    assert orjson.loads(converted.body) == {"organId": PROVINCE, "documents": []}


# == round trips (hypothesis) ============================================================

EDXML = Edxml(FOLDER)
text = st.text(alphabet=ALPHABET, min_size=1, max_size=40).filter(lambda t: t.strip() != "")
multiline = st.lists(text, min_size=1, max_size=3).map("\n".join)
organ_ids = st.from_regex(r"\A[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}\Z")
dates = st.dates(min_value=date(1990, 1, 1), max_value=date(2099, 12, 31)).map(date.isoformat)
blobs = st.binary(min_size=1, max_size=300).map(lambda b: base64.b64encode(b).decode())


def optional(draw: Callable[..., Any], fields: dict[str, Any]) -> dict[str, Any]:
    """Keep each optional field or leave it out."""
    return {k: draw(v) for k, v in fields.items() if draw(st.booleans())}


@st.composite
def organs(draw: Callable[..., Any]) -> dict[str, Any]:
    return {
        "organId": draw(organ_ids),
        **optional(
            draw,
            {
                "organName": text,
                "organizationInCharge": text,
                "address": text,
                "email": st.emails(),
                "telephone": st.from_regex(r"\A0[0-9]{9}\Z"),
            },
        ),
    }


@st.composite
def documents(draw: Callable[..., Any]) -> dict[str, Any]:
    organ, day, tail = draw(st.tuples(organ_ids, dates, text))
    doc: dict[str, Any] = {
        "from": draw(organs()),
        "to": draw(st.lists(organs(), min_size=1, max_size=3)),
        "documentId": f"{organ},{day.replace('-', '/')},{tail.strip()}",
        "code": draw(
            st.one_of(
                st.builds(
                    lambda n, t: {"number": n, "notation": t},
                    st.from_regex(r"\A[0-9]{1,6}\Z"),
                    text,
                ),
                st.builds(lambda t: {"notation": t}, text),
            )
        ),
        "promulgation": {"date": draw(dates), **optional(draw, {"place": text})},
        "type": {"code": draw(st.from_regex(r"\A[0-9]{1,3}\Z")), "name": draw(text)},
        "subject": draw(multiline),
        "signer": {
            "fullName": draw(text),
            **optional(draw, {"position": text, "competence": text}),
        },
    }
    doc.update(
        optional(
            draw,
            {
                "content": multiline,
                "steeringType": st.from_regex(r"\A[0-9]\Z"),
                "priority": st.from_regex(r"\A[0-9]\Z"),
            },
        )
    )
    files = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "name": text,
                    "contentType": st.sampled_from(
                        ["application/pdf", "image/png", "application/octet-stream"]
                    ),
                    "contentBase64": blobs,
                },
                optional={
                    "description": multiline,
                    "contentId": st.from_regex(r"\A[a-z0-9]{1,8}\Z"),
                },
            ),
            max_size=3,
        )
    )
    if files or draw(st.booleans()):
        doc["attachments"] = files
    return doc


def nfc(value: Any) -> Any:
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, list):
        return [nfc(v) for v in value]
    if isinstance(value, dict):
        return {k: nfc(v) for k, v in value.items()}
    return value


def numbered(doc: dict[str, Any]) -> dict[str, Any]:
    files = [
        {"contentId": str(i), **f} if "contentId" not in f else f
        for i, f in enumerate(doc.get("attachments", []), 1)
    ]
    return {**doc, "attachments": files}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.datetimes(timezones=st.just(UTC)))
def test_document_round_trip_loses_nothing(doc: dict[str, Any], now: datetime) -> None:
    assert SEND.errors(orjson.dumps(doc)) == [], doc
    # Through real XML bytes, as the exchange would carry them.
    wire = soap.envelope(EDXML.send_document(doc, now), version="1.1")
    message = soap.parse_envelope(wire)
    assert message.body is not None
    back = EDXML.read_document(message.body)
    assert back == nfc(numbered(doc))
    for sent, got in zip(doc.get("attachments", []), back["attachments"], strict=True):
        assert base64.b64decode(got["contentBase64"]) == base64.b64decode(sent["contentBase64"])
    assert ANSWER.errors(orjson.dumps(back)) == []


@st.composite
def reports(draw: Callable[..., Any]) -> dict[str, Any]:
    moment = draw(
        st.datetimes(
            min_value=datetime(2000, 1, 1),
            max_value=datetime(2090, 1, 1),
            timezones=st.sampled_from(
                [UTC, timezone(timedelta(hours=7)), timezone(timedelta(hours=-5, minutes=-30))]
            ),
        )
    )
    body: dict[str, Any] = {
        "from": {"organId": draw(organ_ids), **optional(draw, {"organName": text})},
        "status": draw(st.sampled_from([n for n in EDXML.status_codes if n != "arrived"])),
        "at": moment.isoformat(),
        **optional(draw, {"description": multiline}),
    }
    staff = optional(draw, {"department": text, "name": text, "mobile": text, "email": st.emails()})
    if staff:
        body["staff"] = staff
    return body


@settings(max_examples=150, deadline=None)
@given(reports(), organ_ids, dates, text)
def test_status_round_trip_loses_nothing(
    body: dict[str, Any], sender: str, day: str, tail: str
) -> None:
    assert STATUS.errors(orjson.dumps(body)) == [], body
    document_id = f"{sender},{day.replace('-', '/')},{tail.strip()}"
    out = adapter().request(
        outbound("POST", "/documents/status", f"documentId={quote(document_id, safe='')}", body),
        Context(),
    )
    message = soap.parse_envelope(out.body)
    assert message.body is not None
    [status] = message.body
    data = _data(status)
    assert data["edXML:ResponseFor"]["edXML:OrganId"] == sender
    assert data["edXML:ResponseFor"]["edXML:DocumentId"] == document_id
    entry = EDXML.read_status(data)
    assert entry["status"] == {"code": EDXML.status_codes[body["status"]], "name": body["status"]}
    assert entry["from"] == nfc(body["from"])
    assert entry.get("description") == nfc(body.get("description"))
    assert entry.get("staff") == nfc(body.get("staff"))
    # The same moment, in Vietnam time, to the second.
    sent_at = datetime.fromisoformat(body["at"]).replace(microsecond=0)
    assert datetime.fromisoformat(entry["at"]) == sent_at
    assert entry["at"].endswith("+07:00")


def _data(element: etree._Element) -> Any:
    from gateway.conversion.mapping.xml import xml_to_data

    [(_, value)] = xml_to_data(
        element, namespaces={"svc": SERVICE_NS, "edXML": EDXML_NS}, lists={"edXML:To"}
    ).items()
    return value


# == configuration and schemas ===========================================================


def spec(**adapter_config: Any) -> dict[str, Any]:
    return {**variant("v1"), "adapter_config": adapter_config}


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"sender_organ_id": "H49"}, "adapter_config.sender_organ_id"),
        ({"sender_organ_id": 49}, "adapter_config.sender_organ_id"),
        ({"soap_version": "2.0"}, "adapter_config.soap_version"),
        ({"legacy_input": "utf-7"}, "adapter_config.legacy_input"),
        ({"sender_organ": PROVINCE}, "adapter_config.sender_organ"),
    ],
)
def test_config_errors_name_the_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ServiceSpec.model_validate(spec(**config))
    assert field in str(caught.value)
    assert any(field in e for e in adapter_config_errors("document_exchange", config))


def test_shipped_policy_is_valid(tmp_path: Path) -> None:
    """policies/document-exchange.yaml beside the province's sample policy (its agencies,
    clients and the ndxp upstream; its rate limits name other files' services), read the
    way `lgsp policy validate` reads them."""
    province = yaml.safe_load((REPO / "policies" / "province.yaml").read_text("utf-8"))
    province.pop("rate_limits", None)
    (tmp_path / "province.yaml").write_text(yaml.safe_dump(province), encoding="utf-8")
    shutil.copy(REPO / "policies" / "document-exchange.yaml", tmp_path)
    policy = load_policy_dir(tmp_path)
    [service] = [s for s in policy.services if s.adapter == "document_exchange"]
    assert (service.provider, service.code, service.upstream_path) == (
        PROVIDER,
        "lien-thong-van-ban",
        "/edxml/v1",
    )
    [right] = service.access
    assert (right.group, right.method, right.path) == ("tthc", "*", "/documents/**")
    members = {c.code for c in policy.clients if "tthc" in c.groups}
    assert members == {"motcua", "hotich"}


def test_union_schemas_carry_the_single_message_definitions() -> None:
    """documents.document.request and .answer repeat the definitions of the single-message
    schemas (the registry takes no references across subjects): they must not drift."""

    def load(name: str) -> dict[str, Any]:
        return dict(json.loads((SCHEMAS / name).read_text("utf-8")))

    def shape(schema: dict[str, Any]) -> dict[str, Any]:
        keys = ("type", "properties", "required", "additionalProperties")
        return {k: schema[k] for k in keys if k in schema}

    send_schema, status_schema = load("document.send.json"), load("document.status.json")
    request, answer = load("document.request.json"), load("document.answer.json")
    for union in (request, answer):
        assert shape(union["$defs"]["document"]) == shape(send_schema)
        for name, definition in send_schema["$defs"].items():
            assert union["$defs"][name] == definition, name
    assert shape(request["$defs"]["statusUpdate"]) == shape(status_schema)
    for name, definition in status_schema["$defs"].items():
        assert request["$defs"][name] == definition, name
