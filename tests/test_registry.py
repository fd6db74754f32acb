"""The schema registry: the Confluent API (spoken to by Confluent's own client), roles,
bundled schemas, XML Schema, and validation of exchanges in the pipeline."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from sqlalchemy import select

from gateway.config import versions as policy_state
from gateway.edge.app import reload_config
from gateway.registry.schema import InvalidSchema, XmlValidator, compile_validator, parse
from gateway.store.models import AdminEvent
from tests.conftest import (
    ECHO,
    NATIONAL_REQUEST,
    NATIONAL_RESPONSE,
    POPULATION,
    PROVINCE_ID,
    Harness,
)

# The store is the subject here: every test runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.dialects("sqlite", "postgresql")

REGISTRY = "application/vnd.schemaregistry.v1+json"
ACCOUNTABLE = {"X-Officer-Id": "CB-0042", "X-Procedure-Code": "1.001234"}

V1 = {
    "type": "object",
    "properties": {"SoDinhDanh": {"type": "string", "pattern": "^[0-9]{12}$"}},
    "required": ["SoDinhDanh"],
    "additionalProperties": False,
}
# Adds an optional field to a closed model: BACKWARD compatible.
V2 = {
    "type": "object",
    "properties": {
        "SoDinhDanh": {"type": "string", "pattern": "^[0-9]{12}$"},
        "HoVaTen": {"type": "string", "maxLength": 100},
    },
    "required": ["SoDinhDanh"],
    "additionalProperties": False,
}
# Makes the new field required: old messages lack it, so BACKWARD incompatible.
V3_BAD = {**V2, "required": ["SoDinhDanh", "HoVaTen"]}


async def admin_credentials(gateway: Harness) -> tuple[str, str]:
    async with gateway.state.sessions() as s, s.begin():
        await policy_state.create_client(
            s,
            code="schema-admin",
            agency_code=PROVINCE_ID,
            name="Schema admin",
            actor="test",
            roles=["administrator"],
        )
    return "schema-admin", await gateway.secret("schema-admin")


def basic(user: str, secret: str) -> httpx.BasicAuth:
    return httpx.BasicAuth(user, secret)


# -- the official Confluent client ------------------------------------------------------------


async def test_confluent_client_registers_reads_and_tests_compatibility(gateway: Harness) -> None:
    user, secret = await admin_credentials(gateway)

    def confluent_session() -> dict[str, Any]:
        client = SchemaRegistryClient(
            {"url": f"{gateway.url}/registry", "basic.auth.user.info": f"{user}:{secret}"}
        )
        first = client.register_schema("ho-so.value", Schema(json.dumps(V1), "JSON"))
        again = client.register_schema("ho-so.value", Schema(json.dumps(V1), "JSON"))
        second = client.register_schema("ho-so.value", Schema(json.dumps(V2), "JSON"))
        by_id = client.get_schema(first)
        latest = client.get_latest_version("ho-so.value")
        versions = client.get_versions("ho-so.value")
        ok = client.test_compatibility("ho-so.value", Schema(json.dumps(V2), "JSON"))
        bad = client.test_compatibility("ho-so.value", Schema(json.dumps(V3_BAD), "JSON"))
        try:
            client.register_schema("ho-so.value", Schema(json.dumps(V3_BAD), "JSON"))
            refused: Any = None
        except SchemaRegistryError as e:
            refused = (e.http_status_code, e.error_code, e.error_message)
        subjects = client.get_subjects()
        return {
            "ids": (first, again, second),
            "by_id": by_id,
            "latest": latest,
            "versions": versions,
            "ok": ok,
            "bad": bad,
            "refused": refused,
            "subjects": subjects,
        }

    r = await asyncio.to_thread(confluent_session)
    first, again, second = r["ids"]
    assert first == again and second != first  # re-registering is idempotent
    assert json.loads(r["by_id"].schema_str) == V1 and r["by_id"].schema_type == "JSON"
    assert r["latest"].version == 2 and r["latest"].schema_id == second
    assert r["versions"] == [1, 2]
    assert r["ok"] is True and r["bad"] is False
    status, code, message = r["refused"]
    assert (status, code) == (409, 409)
    assert "HoVaTen" in message  # the message names the offending property
    assert "ho-so.value" in r["subjects"] and NATIONAL_REQUEST in r["subjects"]


# -- the REST API directly ----------------------------------------------------------------


async def test_reads_need_a_caller_and_writes_need_the_administrator(gateway: Harness) -> None:
    anonymous = await gateway.http.get("/registry/subjects")
    assert anonymous.status_code == 401
    body = anonymous.json()
    assert body["error_code"] == 40101 and body["status"] == 401
    assert body["request_id"] == anonymous.headers["X-Request-Id"]
    assert anonymous.headers["content-type"].startswith("application/problem+json")

    secret = await gateway.secret("motcua")
    listed = await gateway.http.get("/registry/subjects", auth=basic("motcua", secret))
    assert listed.status_code == 200 and NATIONAL_REQUEST in listed.json()
    assert listed.headers["content-type"].startswith(REGISTRY)
    token = await gateway.token("motcua")
    with_token = await gateway.http.get(
        "/registry/subjects", headers={"Authorization": f"Bearer {token}"}
    )
    assert with_token.json() == listed.json()

    write = await gateway.http.post(
        "/registry/subjects/x/versions",
        json={"schema": json.dumps(V1)},
        auth=basic("motcua", secret),
    )
    assert write.status_code == 403 and write.json()["error_code"] == 40301
    assert "administrator" in write.json()["message"]
    wrong = await gateway.http.get("/registry/subjects", auth=basic("motcua", "nope"))
    assert wrong.status_code == 401


async def test_confluent_error_codes(gateway: Harness) -> None:
    user, secret = await admin_credentials(gateway)
    auth = basic(user, secret)
    http = gateway.http
    accept = {"Accept": REGISTRY}

    async def call(method: str, path: str, **kw: Any) -> httpx.Response:
        return await http.request(method, "/registry" + path, auth=auth, headers=accept, **kw)

    def code(r: httpx.Response) -> int:
        assert r.headers["content-type"].startswith(REGISTRY), r.headers
        return int(r.json()["error_code"])

    assert code(await call("GET", "/subjects/nope/versions")) == 40401
    reg = await call("POST", "/subjects/s1/versions", json={"schema": json.dumps(V1)})
    assert reg.status_code == 200
    schema_id = reg.json()["id"]
    assert code(await call("GET", "/subjects/s1/versions/7")) == 40402
    assert code(await call("GET", "/subjects/s1/versions/abc")) == 42202
    assert code(await call("GET", "/schemas/ids/999999")) == 40403
    assert code(await call("POST", "/subjects/s1/versions", json={"schema": "{not json"})) == 42201
    bad_type = await call("POST", "/subjects/s1/versions", json={"schema": '{"type": "strin"}'})
    assert code(bad_type) == 42201
    assert code(await call("PUT", "/config/s1", json={"compatibility": "SIDEWAYS"})) == 42203
    assert code(await call("GET", "/config/s1")) == 40408

    # Lookup, ids shared across subjects, whitespace does not make a new schema.
    spaced = json.dumps(V1, indent=4)
    found = await call("POST", "/subjects/s1", json={"schema": spaced})
    assert found.status_code == 200 and found.json()["id"] == schema_id
    other = await call("POST", "/subjects/s2/versions", json={"schema": spaced})
    assert other.json()["id"] == schema_id
    subjects = await call("GET", f"/schemas/ids/{schema_id}/subjects")
    assert subjects.json() == ["s1", "s2"]
    raw = await call("GET", "/subjects/s1/versions/latest/schema")
    assert raw.json() == V1

    # Soft delete, then permanent; the order is enforced.
    assert code(await call("DELETE", "/subjects/s1", params={"permanent": "true"})) == 40405
    assert (await call("DELETE", "/subjects/s1")).json() == [1]
    assert code(await call("DELETE", "/subjects/s1")) == 40404
    assert code(await call("GET", "/subjects/s1/versions")) == 40401
    deleted = await call("GET", "/subjects/s1/versions", params={"deleted": "true"})
    assert deleted.json() == [1]
    assert (await call("DELETE", "/subjects/s1", params={"permanent": "true"})).json() == [1]
    assert "s1" not in (await call("GET", "/subjects", params={"deleted": "true"})).json()

    # Configuration: global and per subject.
    assert (await call("GET", "/config")).json() == {"compatibilityLevel": "BACKWARD"}
    put = await call("PUT", "/config/s2", json={"compatibility": "FULL_TRANSITIVE"})
    assert put.json() == {"compatibility": "FULL_TRANSITIVE"}
    assert (await call("GET", "/config/s2")).json() == {"compatibilityLevel": "FULL_TRANSITIVE"}
    assert (await call("DELETE", "/config/s2")).status_code == 200
    defaulted = await call("GET", "/config/s2", params={"defaultToGlobal": "true"})
    assert defaulted.json() == {"compatibilityLevel": "BACKWARD"}


async def test_compatibility_endpoint_explains_why(gateway: Harness) -> None:
    user, secret = await admin_credentials(gateway)
    auth = basic(user, secret)
    await gateway.http.post(
        "/registry/subjects/s/versions", json={"schema": json.dumps(V1)}, auth=auth
    )
    r = await gateway.http.post(
        "/registry/compatibility/subjects/s/versions/latest",
        params={"verbose": "true"},
        json={"schema": json.dumps(V3_BAD)},
        auth=auth,
    )
    body = r.json()
    assert body["is_compatible"] is False
    assert any("HoVaTen" in m for m in body["messages"])
    fine = await gateway.http.post(
        "/registry/compatibility/subjects/s/versions", json={"schema": json.dumps(V2)}, auth=auth
    )
    assert fine.json() == {"is_compatible": True}


async def test_registry_changes_are_recorded(gateway: Harness) -> None:
    user, secret = await admin_credentials(gateway)
    await gateway.http.post(
        "/registry/subjects/s/versions", json={"schema": json.dumps(V1)}, auth=basic(user, secret)
    )
    async with gateway.state.sessions() as s:
        from sqlalchemy import select

        from gateway.store.models import AdminEvent

        event = await s.scalar(
            select(AdminEvent).where(
                AdminEvent.action == "registry.register", AdminEvent.target == "s/1"
            )
        )
    assert event is not None and event.actor == "client:schema-admin"


# -- XML Schema -------------------------------------------------------------------------------

XSD = """<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
           targetNamespace="http://www.mic.gov.vn/TBT/QCVN_102_2016"
           xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016" elementFormDefault="qualified">
  <xs:element name="Status">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="DocumentId" type="xs:string"/>
        <xs:element name="StatusCode" type="xs:string"/>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
</xs:schema>"""
NS = 'xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"'


async def test_xml_schemas_register_with_compatibility_none(gateway: Harness) -> None:
    user, secret = await admin_credentials(gateway)
    auth = basic(user, secret)
    first = await gateway.http.post(
        "/registry/subjects/edxml.status/versions",
        json={"schema": XSD, "schemaType": "XML"},
        auth=auth,
    )
    assert first.status_code == 200, first.text
    changed = XSD.replace('name="StatusCode"', 'name="StatusCode" minOccurs="0"')
    refused = await gateway.http.post(
        "/registry/subjects/edxml.status/versions",
        json={"schema": changed, "schemaType": "XML"},
        auth=auth,
    )
    assert refused.status_code == 409 and "NONE" in refused.json()["message"]
    await gateway.http.put(
        "/registry/config/edxml.status", json={"compatibility": "NONE"}, auth=auth
    )
    accepted = await gateway.http.post(
        "/registry/subjects/edxml.status/versions",
        json={"schema": changed, "schemaType": "XML"},
        auth=auth,
    )
    assert accepted.status_code == 200
    types = await gateway.http.get("/registry/schemas/types", auth=auth)
    assert "XML" in types.json()


def test_xml_messages_are_validated_safely(tmp_path: Any) -> None:
    validator = compile_validator(parse("XML", XSD))
    assert isinstance(validator, XmlValidator)
    assert (
        validator.errors(
            f"<Status {NS}><DocumentId>1</DocumentId><StatusCode>03</StatusCode></Status>".encode()
        )
        == []
    )
    missing = validator.errors(f"<Status {NS}><DocumentId>1</DocumentId></Status>".encode())
    assert missing and "StatusCode" in missing[0].detail
    # An external entity is never resolved: the file's content cannot leak into a message.
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    hostile = (
        f'<!DOCTYPE Status [<!ENTITY x SYSTEM "file://{secret}">]>'
        f"<Status {NS}><DocumentId>&x;</DocumentId><StatusCode>1</StatusCode></Status>"
    ).encode()
    errors = validator.errors(hostile)
    assert [e.detail for e in errors] == [
        "the document is refused: the document declares a DTD (<!DOCTYPE ...>) at line 1; "
        "DTDs are refused"
    ]


def test_remote_references_are_refused() -> None:
    with pytest.raises(InvalidSchema, match="remote references are not allowed"):
        parse("JSON", json.dumps({"$ref": "http://example.com/other.json"}))
    local = parse("JSON", json.dumps({"$defs": {"a": {"type": "string"}}, "$ref": "#/$defs/a"}))
    assert compile_validator(local).errors(b'"x"') == []


# -- validation in the pipeline ---------------------------------------------------------------


async def test_bundled_schemas_are_loaded_at_start_idempotently(gateway: Harness) -> None:
    from gateway.registry.bundled import load_bundled

    secret = await gateway.secret("motcua")
    versions = await gateway.http.get(
        f"/registry/subjects/{NATIONAL_REQUEST}/versions", auth=basic("motcua", secret)
    )
    assert versions.json() == [1]
    assert await load_bundled(gateway.state.sessions, gateway.state.settings.schemas_dir) == []


async def test_malformed_request_is_refused_with_pointers(gateway: Harness) -> None:
    token = await gateway.token()
    r = await gateway.http.post(
        f"{POPULATION}/cong-dan/tra-cuu",
        json={"SoDinhDanh": "00109901234", "GhiChu": "x", "HoVaTen": "A" * 101},
        headers={"Authorization": f"Bearer {token}", **ACCOUNTABLE},
    )
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"] == "urn:lgsp:problem:invalid-message" and body["side"] == "caller"
    pointers = {e["pointer"] for e in body["errors"]}
    assert {"/SoDinhDanh", "/HoVaTen", ""} <= pointers
    assert any("GhiChu" in e["detail"] for e in body["errors"])
    [rec] = await gateway.audit(r.headers["X-Request-Id"])
    assert rec.error_type == "invalid-message" and rec.upstream_status is None
    # Nothing malformed reached the national side.
    from simulator.app import LOOKUPS

    assert gateway.simulator[LOOKUPS] == []


async def test_well_formed_exchange_passes_both_schemas(gateway: Harness) -> None:
    token = await gateway.token()
    r = await gateway.http.post(
        f"{POPULATION}/cong-dan/tra-cuu",
        json={"SoDinhDanh": "001099012345"},
        headers={"Authorization": f"Bearer {token}", **ACCOUNTABLE},
    )
    assert r.status_code == 200, r.text
    assert r.json()["CongDan"]["Ho"] == "Nguyễn"


async def test_nonconforming_answer_is_a_502_flagged_in_the_audit(gateway: Harness) -> None:
    token = await gateway.token()
    r = await gateway.http.post(
        f"/r1/{PROVINCE_ID}/echo-checked/v1/x",
        json={"SoDinhDanh": "001099012345"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 502, r.text
    body = r.json()
    assert body["type"] == "urn:lgsp:problem:upstream-invalid-message"
    assert body["side"] == "upstream"
    assert any("MaLoi" in e["detail"] for e in body["errors"])
    [rec] = await gateway.audit(r.headers["X-Request-Id"])
    assert rec.status == 502 and rec.upstream_status == 200
    assert rec.error_type == "upstream-invalid-message"
    # The record keeps the digest of what the provider answered, not of our 502.
    assert rec.response_sha256 != hashlib.sha256(r.content).hexdigest()


async def test_service_whose_schema_is_gone_refuses_rather_than_skip_validation(
    gateway: Harness,
) -> None:
    from gateway.registry import store

    async with gateway.state.sessions() as s, s.begin():
        await store.delete_version(s, NATIONAL_REQUEST, 1, permanent=False, actor="test")
    await reload_config(gateway.state)
    token = await gateway.token()
    r = await gateway.http.post(
        f"/r1/{PROVINCE_ID}/echo-checked/v1/x",
        json={"SoDinhDanh": "001099012345"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 503
    assert r.json()["type"] == "urn:lgsp:problem:schema-unavailable"
    assert NATIONAL_REQUEST in r.json()["detail"]
    # Services without schemas are untouched.
    ok = await gateway.http.get(f"{ECHO}/x", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200


async def test_policy_naming_an_unregistered_schema_is_not_applied(gateway: Harness) -> None:
    from tests.conftest import test_policy

    policy = test_policy("http://127.0.0.1:1", "http://127.0.0.1:2").model_dump()
    policy["services"][0]["schemas"]["request"] = {"subject": "no.such.subject"}
    from gateway.config.policy import PolicySet

    async with gateway.state.sessions() as s:
        with pytest.raises(policy_state.PolicyRejected, match=r"services\[0\]\.schemas\.request"):
            await policy_state.apply_policy(s, PolicySet.model_validate(policy), actor="t")


def test_national_response_schema_accepts_every_simulated_citizen() -> None:
    """The bundled schema and the simulator agree, so the demo's answers validate."""
    import importlib.resources

    citizens = json.loads(
        importlib.resources.files("simulator").joinpath("data/citizens.json").read_text("utf-8")
    )
    from tests.conftest import REPO

    text = (REPO / "schemas" / "population" / "citizen-lookup.national.response.json").read_text()
    validator = compile_validator(parse("JSON", text))
    for c in citizens:
        public = {k: v for k, v in c.items() if k != "HanChe"}
        doc = {"MaYeuCau": "r", "MaLoi": "0", "MoTaLoi": "Thành công", "CongDan": public}
        assert validator.errors(json.dumps(doc).encode()) == [], c["SoDinhDanh"]


async def test_concurrent_registrations_get_distinct_versions(gateway: Harness) -> None:
    user, secret = await admin_credentials(gateway)
    variants = [
        {**V1, "properties": {**V1["properties"], f"f{i}": {"type": "string"}}} for i in range(4)
    ]
    await gateway.http.put(
        "/registry/config/race", json={"compatibility": "NONE"}, auth=basic(user, secret)
    )
    answers = await asyncio.gather(
        *(
            gateway.http.post(
                "/registry/subjects/race/versions",
                json={"schema": json.dumps(v)},
                auth=basic(user, secret),
            )
            for v in variants
        )
    )
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    versions = await gateway.http.get("/registry/subjects/race/versions", auth=basic(user, secret))
    assert versions.json() == [1, 2, 3, 4]


async def test_subject_names_are_checked(gateway: Harness) -> None:
    user, secret = await admin_credentials(gateway)
    r = await gateway.http.post(
        "/registry/subjects/" + "s" * 300 + "/versions",
        json={"schema": json.dumps(V1)},
        auth=basic(user, secret),
    )
    assert r.status_code == 422 and r.json()["error_code"] == 42208


async def test_xml_service_validates_its_requests_end_to_end(gateway: Harness) -> None:
    from gateway.config.policy import PolicySet
    from gateway.registry import store

    async with gateway.state.sessions() as s, s.begin():
        await store.register(s, "edxml.status", store.parse_schema("XML", XSD), actor="t", text=XSD)
    sim = str(gateway.simulator_url)
    policy = PolicySet.model_validate(
        {
            "agencies": [
                {"code": PROVINCE_ID, "name": "UBND tỉnh"},
                {"code": "000.00.31.H49", "name": "Trung tâm PVHCC"},
            ],
            "clients": [{"code": "motcua", "agency": "000.00.31.H49", "name": "Một cửa"}],
            "upstreams": [{"name": "sim-open", "base_url": sim}],
            "services": [
                {
                    "provider": PROVINCE_ID,
                    "code": "edxml-status",
                    "version": "v1",
                    "name": "edXML status",
                    "upstream": "sim-open",
                    "upstream_path": "/_sim/echo",
                    "schemas": {"request": {"subject": "edxml.status", "version": 1}},
                    "access": [{"client": "motcua"}],
                }
            ],
        }
    )
    async with gateway.state.sessions() as s, s.begin():
        await policy_state.apply_policy(s, policy, actor="test")
    await reload_config(gateway.state)
    token = await gateway.token()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/xml"}
    url = f"/r1/{PROVINCE_ID}/edxml-status/v1/trang-thai"
    good = (
        f"<Status {NS}><DocumentId>123/UBND-VP</DocumentId><StatusCode>03</StatusCode></Status>"
    ).encode()
    ok = await gateway.http.post(url, content=good, headers=headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["body"] == good.decode()  # forwarded unchanged
    bad = await gateway.http.post(
        url,
        content=f"<Status {NS}><DocumentId>1</DocumentId></Status>".encode(),
        headers=headers,
    )
    assert bad.status_code == 400
    assert bad.json()["type"] == "urn:lgsp:problem:invalid-message"
    assert "StatusCode" in bad.json()["errors"][0]["detail"]

    # Hostile documents: refused before anything is built, each a 400 saying why, audited.
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + b"".join(
            f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">'.encode() for i in range(1, 10)
        ).replace(b"&lol0;", b"&lol;")
        + b"]><Status>&lol9;</Status>"
    )
    deep = b"<a>" * 100_000 + b"</a>" * 100_000
    for hostile, why in ((laughs, "DTDs are refused"), (deep, "nesting deeper than 64")):
        r = await gateway.http.post(
            url, content=hostile, headers={**headers, "X-Request-Id": f"hostile-{len(hostile)}"}
        )
        assert r.status_code == 400 and r.json()["type"] == "urn:lgsp:problem:invalid-message"
        assert why in r.json()["errors"][0]["detail"]
        [record] = await gateway.audit(f"hostile-{len(hostile)}")
        assert record.error_type == "invalid-message"


async def test_validated_answers_are_not_compressed_by_the_provider(gateway: Harness) -> None:
    """A provider that gzips when asked must not turn a valid answer into a 502: for a
    service whose answers are validated, the gateway asks the provider for identity."""
    import gzip

    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from gateway.config.policy import PolicySet

    answer = json.dumps({"MaYeuCau": "r", "MaLoi": "0", "MoTaLoi": "Thành công"}).encode()
    seen: list[str] = []

    async def lookup(request: web.Request) -> web.Response:
        accepted = request.headers.get("Accept-Encoding", "")
        seen.append(accepted)
        if "gzip" in accepted:
            return web.Response(
                body=gzip.compress(answer),
                content_type="application/json",
                headers={"Content-Encoding": "gzip"},
            )
        return web.Response(body=answer, content_type="application/json")

    app = web.Application()
    app.router.add_post("/lookup", lookup)
    provider = TestServer(app, host="127.0.0.1")
    await provider.start_server()
    try:
        policy = PolicySet.model_validate(
            {
                "agencies": [
                    {"code": PROVINCE_ID, "name": "UBND tỉnh"},
                    {"code": "000.00.31.H49", "name": "Trung tâm PVHCC"},
                ],
                "clients": [{"code": "motcua", "agency": "000.00.31.H49", "name": "Một cửa"}],
                "upstreams": [
                    {"name": "gzipper", "base_url": str(provider.make_url("")).rstrip("/")}
                ],
                "services": [
                    {
                        "provider": PROVINCE_ID,
                        "code": "gzip-checked",
                        "version": "v1",
                        "name": "gzip",
                        "upstream": "gzipper",
                        "schemas": {"response": {"subject": NATIONAL_RESPONSE}},
                        "access": [{"client": "motcua"}],
                    }
                ],
            }
        )
        async with gateway.state.sessions() as s, s.begin():
            await policy_state.apply_policy(s, policy, actor="test")
        await reload_config(gateway.state)
        token = await gateway.token()
        r = await gateway.http.post(
            f"/r1/{PROVINCE_ID}/gzip-checked/v1/lookup",
            content=b"{}",
            headers={"Authorization": f"Bearer {token}", "Accept-Encoding": "gzip, deflate"},
        )
    finally:
        await provider.close()
    assert r.status_code == 200, r.text
    assert r.json()["MaLoi"] == "0"
    assert seen == ["identity"]


async def test_a_compressed_request_to_a_validated_service_is_decoded_and_checked(
    gateway: Harness,
) -> None:
    """The service reads its messages: the gateway inflates the body (within the limit,
    gateway/core/bodies.py), checks it against the schema and forwards it decoded."""
    import gzip

    token = await gateway.token()
    headers = {"Authorization": f"Bearer {token}", "Content-Encoding": "gzip", **ACCOUNTABLE}
    r = await gateway.http.post(
        f"{POPULATION}/cong-dan/tra-cuu",
        content=gzip.compress(b'{"SoDinhDanh": "001099012345"}'),
        headers=headers,
    )
    assert r.status_code == 200, r.text
    bad = await gateway.http.post(
        f"{POPULATION}/cong-dan/tra-cuu",
        content=gzip.compress(b'{"SoDinhDanh": 1}'),
        headers=headers,
    )
    assert bad.status_code == 400
    assert bad.json()["type"] == "urn:lgsp:problem:invalid-message"


async def test_bodiless_requests_skip_request_validation(gateway: Harness) -> None:
    """A GET carries no message: only the answer is checked (here the echo's, which is
    not a lookup result, hence 502 rather than a 400 about the missing body)."""
    token = await gateway.token()
    r = await gateway.http.get(
        f"/r1/{PROVINCE_ID}/echo-checked/v1/status", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 502, r.text
    assert r.json()["type"] == "urn:lgsp:problem:upstream-invalid-message"
    empty_post = await gateway.http.post(
        f"/r1/{PROVINCE_ID}/echo-checked/v1/x", headers={"Authorization": f"Bearer {token}"}
    )
    assert empty_post.status_code == 400  # a POST must carry its message


async def test_query_parameters_as_confluent_clients_send_them(gateway: Harness) -> None:
    """Confluent's parameters are accepted as its clients send them (`False` as well as
    `false`, paging always); anything else is refused in the registry's error shape."""
    user, secret = await admin_credentials(gateway)
    auth = basic(user, secret)
    for subject in ("q-a", "q-b", "q-c"):
        r = await gateway.http.post(
            f"/registry/subjects/{subject}/versions?normalize=False",
            json={"schema": json.dumps(V1)},
            auth=auth,
        )
        assert r.status_code == 200, r.text
    assert (await gateway.http.delete("/registry/subjects/q-c", auth=auth)).status_code == 200

    async def subjects(query: str) -> Any:
        r = await gateway.http.get(f"/registry/subjects?{query}", auth=auth)
        assert r.status_code == 200, r.text
        return r.json()

    assert await subjects(
        "deleted=False&deleted_only=False&offset=0&limit=-1&subjectPrefix=q-"
    ) == [
        "q-a",
        "q-b",
    ]
    assert await subjects("subjectPrefix=q-&deleted=true") == ["q-a", "q-b", "q-c"]
    assert await subjects("subjectPrefix=q-&deleted_only=true") == ["q-c"]
    assert await subjects("subjectPrefix=q-&offset=1&limit=1") == ["q-b"]
    r = await gateway.http.post(
        "/registry/compatibility/subjects/q-a/versions/latest?normalize=False&verbose=True",
        json={"schema": json.dumps(V3_BAD)},
        auth=auth,
    )
    assert r.status_code == 200 and r.json()["messages"], r.text

    for query, name in (
        ("colour=red", "colour"),
        ("deleted=yes", "deleted"),
        ("deleted=true&deleted=false", "deleted"),
        ("offset=-1", "offset"),
        ("limit=ten", "limit"),
    ):
        r = await gateway.http.get(f"/registry/subjects?{query}", auth=auth)
        assert r.status_code == 400, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        body = r.json()
        assert body["error_code"] == 400 and body["status"] == 400
        assert body["parameter"] == name and body["message"] == body["detail"]
        assert body["message"].startswith(f"{name}: ")
        assert body["type"] == "urn:lgsp:problem:invalid-parameter"
        assert body["request_id"] == r.headers["X-Request-Id"]
    # A Confluent client that accepts only the registry's type gets it.
    r = await gateway.http.get(
        "/registry/subjects?colour=red", auth=auth, headers={"Accept": REGISTRY}
    )
    assert r.status_code == 400 and r.headers["content-type"].startswith(REGISTRY)
    assert "it takes deleted, deleted_only, limit, offset, subjectPrefix" in r.json()["message"]


# -- the rest of Confluent's API: raw schemas, references, modes, the root ---------------------


async def test_confluent_client_reads_modes_references_and_schema_uses(gateway: Harness) -> None:
    user, secret = await admin_credentials(gateway)

    def confluent_session() -> dict[str, Any]:
        client = SchemaRegistryClient(
            {"url": f"{gateway.url}/registry", "basic.auth.user.info": f"{user}:{secret}"}
        )
        schema_id = client.register_schema("mode.value", Schema(json.dumps(V1), "JSON"))
        out: dict[str, Any] = {
            "global": client.get_global_mode(),
            "referenced_by": client.get_referenced_by("mode.value", 1),
            "uses": client.get_schema_versions(schema_id),
        }
        client.update_mode("mode.value", "READONLY")
        out["subject"] = client.get_mode("mode.value")
        try:
            client.register_schema("mode.value", Schema(json.dumps(V2), "JSON"))
            out["refused"] = None
        except SchemaRegistryError as e:
            out["refused"] = (e.http_status_code, e.error_code)
        client.update_mode("mode.value", "READWRITE")
        out["after"] = client.register_schema("mode.value", Schema(json.dumps(V2), "JSON"))
        return out

    r = await asyncio.to_thread(confluent_session)
    assert r["global"] == "READWRITE"
    assert r["referenced_by"] == []
    assert [(v.subject, v.version) for v in r["uses"]] == [("mode.value", 1)]
    assert r["subject"] == "READONLY"
    assert r["refused"] == (422, 42205)  # a read-only subject takes no new version
    assert r["after"] != 0


async def test_raw_schema_by_id_root_and_a_registry_wide_read_only_mode(gateway: Harness) -> None:
    user, secret = await admin_credentials(gateway)
    auth = basic(user, secret)
    created = await gateway.http.post(
        "/registry/subjects/raw.value/versions", json={"schema": json.dumps(V1)}, auth=auth
    )
    schema_id = created.json()["id"]
    raw = await gateway.http.get(f"/registry/schemas/ids/{schema_id}/schema", auth=auth)
    assert raw.status_code == 200 and raw.json() == V1  # the schema itself, not wrapped
    root = await gateway.http.get("/registry/", auth=auth)
    assert (root.status_code, root.json()) == (200, {})
    missing = await gateway.http.get(
        "/registry/subjects/raw.value/versions/9/referencedby", auth=auth
    )
    assert missing.json()["error_code"] == 40402

    assert (
        await gateway.http.put("/registry/mode", json={"mode": "READONLY"}, auth=auth)
    ).is_success
    for method, path, body in (
        ("POST", "/registry/subjects/raw.value/versions", {"schema": json.dumps(V2)}),
        ("PUT", "/registry/config", {"compatibility": "NONE"}),
        ("DELETE", "/registry/subjects/raw.value", None),
    ):
        r = await gateway.http.request(method, path, json=body, auth=auth)
        assert (r.status_code, r.json()["error_code"]) == (422, 42205), (method, path, r.text)
    bad = await gateway.http.put("/registry/mode", json={"mode": "IMPORT"}, auth=auth)
    assert bad.json()["error_code"] == 42204
    back = await gateway.http.put("/registry/mode", json={"mode": "READWRITE"}, auth=auth)
    assert back.json() == {"mode": "READWRITE"}
    # Who changed the mode, and when, is an admin event like any registry change.
    async with gateway.state.sessions() as s:
        actions = (await s.scalars(select(AdminEvent.action))).all()
    assert actions.count("registry.mode") == 2
