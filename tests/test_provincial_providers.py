"""The sample provincial providers, as `policies/` declares them, through a running
gateway: the Department of Justice's civil-status registry read by the health
department's system (department to department) and by a ward's one-stop-shop (down to
the wards), each with only the rights its policy grants."""

from __future__ import annotations

import pytest

from gateway.config import versions as policy_state
from gateway.config.policy import load_policy_dir, with_mapping_digests
from gateway.edge.reload import reload_config
from tests.conftest import REPO, Harness

BIRTHS = "/r1/000.00.12.H49/khai-sinh/v1/khai-sinh"
ACCOUNTABLE = {"X-Officer-Id": "CB-HC-07", "X-Procedure-Code": "1.001612"}


@pytest.fixture
async def sample(gateway: Harness, monkeypatch: pytest.MonkeyPatch) -> Harness:
    """The gateway running the sample policies, the simulator playing every system."""
    sim = gateway.simulator_url
    monkeypatch.setenv("LGSP_HOTICH_URL", f"{sim}/tinh/hotich/v1")
    monkeypatch.setenv("LGSP_MOTCUA_URL", f"{sim}/tinh/motcua/v1")
    monkeypatch.setenv("LGSP_NDXP_URL", sim)
    monkeypatch.setenv("LGSP_NDXP_JWKS_URL", f"{sim}/.well-known/jwks.json")
    policy = with_mapping_digests(load_policy_dir(REPO / "policies"))
    async with gateway.state.sessions() as s, s.begin():
        await policy_state.apply_policy(s, policy, actor="test")
    await reload_config(gateway.state)
    return gateway


@pytest.mark.parametrize("system", ["yte", "motcua-haichau"])
async def test_a_department_and_a_ward_read_a_birth_registration(
    sample: Harness, system: str
) -> None:
    bearer = {"Authorization": f"Bearer {await sample.token(system)}"}
    r = await sample.http.get(f"{BIRTHS}/049225000123", headers={**bearer, **ACCOUNTABLE})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["maLoi"] == "0" and body["hoVaTen"] == "Nguyễn Minh An"
    # The registry sees who asked: the system and its agency, as the gateway vouches.
    assert body["nguoiHoi"]["X-Client-Id"] == system
    [record] = await sample.audit(r.headers["X-Request-Id"])
    assert record.client_code == system and record.provider_code == "000.00.12.H49"
    assert record.officer_id == "CB-HC-07"
    # Reading is all they may do, and only with the officer and procedure named.
    r = await sample.http.post(f"{BIRTHS}/049225000123", headers={**bearer, **ACCOUNTABLE})
    assert r.status_code == 403, r.text
    r = await sample.http.get(f"{BIRTHS}/049225000123", headers=bearer)
    assert r.status_code == 400 and "missing-accountability" in r.json()["type"], r.text


async def test_the_ward_system_reaches_no_national_service(sample: Harness) -> None:
    bearer = {"Authorization": f"Bearer {await sample.token('motcua-haichau')}"}
    r = await sample.http.post(
        "/r1/000.00.00.G01/csdlqg-dancu/v1/cong-dan/tra-cuu",
        headers={**bearer, **ACCOUNTABLE, "Content-Type": "application/json"},
        content=b'{"SoDinhDanh": "001099012345"}',
    )
    assert r.status_code == 403, r.text
    assert r.json()["type"] == "urn:lgsp:problem:access-denied"
