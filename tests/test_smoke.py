from tests.conftest import POPULATION, Harness

HEADERS = {"X-Officer-Id": "CB-0042", "X-Procedure-Code": "1.001234"}


async def test_population_lookup_through_gateway(gateway: Harness) -> None:
    token = await gateway.token()
    r = await gateway.http.post(
        f"{POPULATION}/cong-dan/tra-cuu",
        json={"SoDinhDanh": "001099012345"},
        headers={"Authorization": f"Bearer {token}", **HEADERS},
    )
    assert r.status_code == 200, r.text
    assert r.json()["CongDan"]["Ten"] == "An"
    [rec] = await gateway.audit(r.headers["X-Request-Id"])
    assert rec.status == 200 and rec.client_code == "motcua"
