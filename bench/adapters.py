"""What message conversion costs per exchange: the population adapter (JSON <-> JSON),
the document-exchange adapter (JSON <-> edXML in SOAP 1.1) and the declared land registry
(JSON <-> SOAP 1.1, YAML only; hooks alone), against an identity pass-through of the same
exchange, in the same run.

Two measurements:

1. The hooks alone, in this process: `request()` on a canonical request plus
   `response()` on the national answer the simulator really gives to it, repeated; the
   identity is the base `Adapter` (what a `passthrough` service would do if it had an
   adapter object at all; it has none). Microseconds per exchange.
2. End to end, through `lgsp serve` and the simulator as separate processes: the same
   national lookup through `csdlqg-dancu/v1` (national form, passed through) and
   `csdlqg-dancu/v2` (canonical form, population adapter); the same pending-documents
   query as a SOAP envelope passed through (`lien-thong-van-ban-soap`, added by this
   benchmark) and as `GET /documents/pending` through the adapter. Rounds alternate.

    .venv/bin/python -m bench.adapters [--repeat 3000] [--requests 1500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from bench.http_load import (
    HEADERS,
    NATIONAL_SECRET,
    gateway_stack,
    sample_policies,
    send_many,
)
from bench.http_load import (
    quantile_ms as ms,
)
from gateway.conversion.catalogue import build_adapter
from gateway.conversion.mapping.engine import Context
from gateway.conversion.sdk import Adapter, AdapterConfig
from gateway.core.messages import (
    OutboundRequest,
    UpstreamResponse,
)
from gateway.upstream.tokens import basic_authorization
from simulator.app import create_app as create_simulator

REPO = Path(__file__).resolve().parent.parent

PROVINCE = "000.00.00.H49"
CONTEXT = Context(
    request_id="bench-1", client="motcua", client_agency="000.00.31.H49",
    officer="CB-0042", procedure="1.001234",
)  # fmt: skip
PENDING_SOAP = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
    b'<svc:GetPendingDocuments xmlns:svc="http://www.mic.gov.vn/TBT/QCVN_102_2016/service">'
    b"<svc:OrganId>000.00.31.H49</svc:OrganId></svc:GetPendingDocuments>"
    b"</soap:Body></soap:Envelope>"
)


def document(attachment_bytes: int) -> dict[str, Any]:
    content = base64.b64encode(os.urandom(attachment_bytes)).decode()
    return {
        "from": {"organId": PROVINCE, "organName": "Ủy ban nhân dân tỉnh (mẫu)"},
        "to": [{"organId": "000.00.31.H49", "organName": "Trung tâm Phục vụ hành chính công"}],
        "documentId": f"{PROVINCE},2025/11/22,{time.monotonic_ns()}/UBND-VP",
        "code": {"number": "123", "notation": "UBND-VP"},
        "promulgation": {"place": "Tỉnh (mẫu)", "date": "2025-11-22"},
        "type": {"code": "1", "name": "Công văn"},
        "subject": "Về việc triển khai nền tảng tích hợp, chia sẻ dữ liệu cấp tỉnh",
        "content": "Ủy ban nhân dân tỉnh đề nghị các sở, ban, ngành triển khai …",
        "signer": {"fullName": "Nguyễn Văn An", "position": "Chủ tịch"},
        "attachments": [
            {"name": f"tep-{i}.pdf", "contentType": "application/pdf", "contentBase64": content}
            for i in range(2)
        ],
    }


async def national_answer(
    client: TestClient[Any, Any], token: str, out: OutboundRequest, prefix: str
) -> UpstreamResponse:
    headers = dict(out.headers)
    headers["Authorization"] = f"Bearer {token}"
    url = prefix + out.path + (f"?{out.query}" if out.query else "")
    async with client.request(out.method, url, data=out.body, headers=headers) as r:
        return UpstreamResponse(r.status, CIMultiDict(r.headers), await r.read(), 0.0)


def per_exchange_us(
    adapter: Adapter, out: OutboundRequest, answer: UpstreamResponse, repeat: int
) -> float:
    def fresh() -> tuple[OutboundRequest, UpstreamResponse]:
        return (
            OutboundRequest(out.method, out.path, out.query, CIMultiDict(out.headers), out.body),
            UpstreamResponse(answer.status, CIMultiDict(answer.headers), answer.body, 0.0),
        )

    inputs = [fresh() for _ in range(repeat)]
    t = time.perf_counter()
    for req, ans in inputs:
        sent = adapter.request(req, CONTEXT)
        adapter.response(ans, sent, CONTEXT)
    return (time.perf_counter() - t) / repeat * 1e6


async def hook_costs(repeat: int) -> list[tuple[str, float, float, int, int]]:
    """(case, adapter µs, identity µs, canonical bytes, national bytes) per exchange."""
    population = build_adapter(
        "population", {"agency_code": PROVINCE, "integration_code": "00000000000000000049"}
    )
    documents = build_adapter("document_exchange", {"sender_organ_id": PROVINCE})
    land = build_adapter("land_registry", {"agency_code": PROVINCE})  # declared: YAML only
    assert population is not None and documents is not None and land is not None
    identity = Adapter(AdapterConfig())
    simulator = TestServer(create_simulator({PROVINCE: NATIONAL_SECRET}), host="127.0.0.1")
    rows = []
    async with TestClient(simulator) as client:
        async with client.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": basic_authorization(PROVINCE, NATIONAL_SECRET)},
        ) as r:
            token = (await r.json())["access_token"]
        json_headers = CIMultiDict({"Content-Type": "application/json"})
        cases: list[tuple[str, Adapter, OutboundRequest, str]] = [
            (
                "population: lookup by number (JSON)",
                population,
                OutboundRequest(
                    "POST", "/cong-dan/tra-cuu", "", json_headers.copy(),
                    orjson.dumps({"personalId": "001099012345"}),
                ),
                "/csdldc/v1",
            ),
            (
                "documents: send, 2 x 20 KB attachments (SOAP)",
                documents,
                OutboundRequest(
                    "POST", "/documents", "", json_headers.copy(),
                    orjson.dumps(document(20_000)),
                ),
                "/edxml/v1",
            ),
            (
                "documents: pending list (SOAP)",
                documents,
                OutboundRequest(
                    "GET", "/documents/pending", "organId=000.00.31.H49", CIMultiDict(), b""
                ),
                "/edxml/v1",
            ),
            (
                "land: parcel, 2 holders (SOAP, declared)",
                land,
                OutboundRequest(
                    "POST", "/thua-dat/tra-cuu", "", json_headers.copy(),
                    orjson.dumps({"provinceCode": "01", "mapSheet": 12, "parcelNumber": 345}),
                ),
                "/dat-dai/v1",
            ),
        ]  # fmt: skip
        for name, adapter, canonical, prefix in cases:
            national = adapter.request(
                OutboundRequest(
                    canonical.method,
                    canonical.path,
                    canonical.query,
                    CIMultiDict(canonical.headers),
                    canonical.body,
                ),
                CONTEXT,
            )
            answer = await national_answer(client, token, national, prefix)
            if not 200 <= answer.status < 300:
                raise RuntimeError(f"{name}: the simulator answered {answer.status}")
            converted = per_exchange_us(adapter, canonical, answer, repeat)
            passed = per_exchange_us(identity, canonical, answer, repeat)
            rows.append((name, converted, passed, len(canonical.body), len(national.body)))
    return rows


def write_policy(directory: Path) -> None:
    sample_policies(directory)
    # The same national operation, passed through as SOAP: the identity for documents.
    (directory / "bench-soap.yaml").write_text(
        """services:
  - provider: "000.00.00.G22"
    code: lien-thong-van-ban-soap
    version: v1
    name: "edXML, SOAP passed through (benchmark)"
    upstream: ndxp
    upstream_path: /edxml/v1
    access: [{client: motcua}]
""",
        encoding="utf-8",
    )


async def end_to_end(args: argparse.Namespace) -> list[tuple[str, list[float], list[float]]]:
    work = Path(tempfile.mkdtemp(prefix="lgsp-bench-"))
    policies = work / "policies"
    policies.mkdir()
    write_policy(policies)
    async with gateway_stack(policies, work) as (base, token):
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            auth = {**HEADERS, "Authorization": f"Bearer {token}"}
            soap = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "text/xml; charset=utf-8",
                "SOAPAction": '"GetPendingDocuments"',
            }
            population = f"{base}/r1/000.00.00.G01/csdlqg-dancu"
            documents = f"{base}/r1/000.00.00.G22"
            cases: dict[str, tuple[tuple[str, str, dict[str, str], bytes | None], ...]] = {
                "population lookup": (
                    ("POST", f"{population}/v1/cong-dan/tra-cuu", auth,
                     orjson.dumps({"SoDinhDanh": "001099012345"})),
                    ("POST", f"{population}/v2/cong-dan/tra-cuu", auth,
                     orjson.dumps({"personalId": "001099012345"})),
                ),
                "documents pending": (
                    ("POST", f"{documents}/lien-thong-van-ban-soap/v1/soap", soap, PENDING_SOAP),
                    ("GET", f"{documents}/lien-thong-van-ban/v1/documents/pending"
                     "?organId=000.00.31.H49", auth, None),
                ),
            }  # fmt: skip
            results: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in cases}
            for name, pair in cases.items():
                for method, url, headers, body in pair:  # warm up
                    await send_many(session, method, url, headers, body, 100, args.concurrency)
                for round_ in range(args.rounds):
                    order = [0, 1] if round_ % 2 == 0 else [1, 0]
                    for i in order:
                        method, url, headers, body = pair[i]
                        lat, _ = await send_many(
                            session, method, url, headers, body, args.requests, args.concurrency
                        )
                        results[name][i].extend(lat)
            return [(k, v[0], v[1]) for k, v in results.items()]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3000, help="hook calls per case")
    ap.add_argument("--requests", type=int, default=1500, help="per round and service")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    print(f"$ .venv/bin/python -m bench.adapters {' '.join(sys.argv[1:])}".rstrip())
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}\n")

    print("1. conversion hooks alone (request + response), per exchange")
    print(f"{'case':<48} {'adapter µs':>11} {'identity µs':>12} {'in B':>7} {'out B':>7}")
    for name, converted, passed, size_in, size_out in await hook_costs(args.repeat):
        print(f"{name:<48} {converted:>11.1f} {passed:>12.2f} {size_in:>7} {size_out:>7}")

    print(f"\n2. end to end through the gateway ({args.rounds} rounds x {args.requests} requests,")
    print(f"   {args.concurrency} concurrent; SQLite store, audit on)")
    print(f"{'exchange':<20} {'form':<28} {'mean ms':>8} {'p50 ms':>7} {'p99 ms':>7}")
    for name, passed, converted in await end_to_end(args):
        for form, lat in (
            ("passed through (identity)", passed),
            ("through the adapter", converted),
        ):
            print(
                f"{name:<20} {form:<28} {statistics.fmean(lat) * 1000:>8.2f} "
                f"{ms(lat, 0.5):>7.2f} {ms(lat, 0.99):>7.2f}"
            )
        delta = (statistics.fmean(converted) - statistics.fmean(passed)) * 1000
        print(f"{'':<20} {'adapter - identity (mean)':<28} {delta:>+8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
