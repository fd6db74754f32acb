"""The national platform calling in: tokens of a trusted external issuer, verified with
the keys its JWKS publishes, through the real gateway and the simulated platform.

The simulator plays the national platform (its own RSA key, JWKS and call-in helper,
simulator/national_issuer.py) and the province's one-stop-shop system (the provider,
simulator/provincial.py). The gateway's key cache runs on a clock the tests move, so
"30 s later" needs no waiting.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway.config import versions as policy_state
from gateway.config.policy import PolicySet
from gateway.edge.reload import reload_config
from gateway.identity.issuers import cache_seconds
from gateway.store.models import AdminEvent
from gateway.upstream.allowlist import OutboundPolicy
from simulator.national_issuer import ISSUER, NATIONAL_ISSUER, NationalIssuer, call_in
from tests.conftest import ECHO, Harness
from tests.test_auth import assert_problem

AUDIENCE = "urn:lgsp:000.00.00.H49"
PORTAL = "dvcqg"
PORTAL_AGENCY = "000.00.00.G25"
STATUS = "/r1/000.00.31.H49/motcua-ho-so/v1/ho-so/000.00.31.H49-251122-0001/trang-thai"


@dataclass
class Clock:
    """The key cache's monotonic clock, moved by the tests."""

    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now


def _national(h: Harness) -> NationalIssuer:
    return h.simulator[NATIONAL_ISSUER]


async def trust_national_platform(
    h: Harness, *, enabled: bool = True, client_enabled: bool = True
) -> Clock:
    """Configure the national platform as a trusted issuer speaking as the portal's client,
    and a provincial service it may call; return the clock of the key cache."""
    clock = Clock()
    h.state.issuers.clock = clock

    def change(doc: dict[str, Any]) -> None:
        doc["agencies"].append({"code": PORTAL_AGENCY, "name": "Cổng DVC quốc gia"})
        doc["clients"].append(
            {"code": PORTAL, "agency": PORTAL_AGENCY, "name": "Portal", "enabled": client_enabled}
        )
        doc["upstreams"].append(
            {"name": "motcua-tinh", "base_url": f"{h.simulator_url}/tinh/motcua/v1"}
        )
        doc["services"].append(
            {
                "provider": "000.00.31.H49",
                "code": "motcua-ho-so",
                "version": "v1",
                "name": "Dossier status",
                "upstream": "motcua-tinh",
                "access": [{"client": PORTAL, "method": "GET", "path": "/ho-so/*/trang-thai"}],
            }
        )
        doc["issuers"].append(
            {
                "issuer": ISSUER,
                "jwks_url": f"{h.simulator_url}/.well-known/jwks.json",
                "audience": AUDIENCE,
                "algorithms": ["RS256"],
                "client": PORTAL,
                "max_token_lifetime_seconds": 3600,
                "enabled": enabled,
            }
        )

    async with h.state.sessions() as s, s.begin():
        await policy_state.edit_policy(
            s, change, actor="admin-api:quantri", source="test", outbound=None
        )
    await reload_config(h.state)
    # What the gateway's background task does when the configuration names an issuer.
    await h.state.issuers.refresh_due(h.state.pipeline.config.issuers)
    return clock


async def get(h: Harness, token: str, path: str = STATUS) -> httpx.Response:
    return await h.http.get(path, headers={"Authorization": f"Bearer {token}"})


# -- the call works, as the client the issuer speaks as --------------------------------------


async def test_the_national_portal_reads_a_dossier_status_and_is_audited(gateway: Harness) -> None:
    h = gateway
    await trust_national_platform(h)
    national = _national(h)
    assert national.jwks_fetches == 1  # fetched at configuration time, before any call

    answer = await call_in(national, h.url, STATUS, AUDIENCE)
    assert answer["status"] == 200, answer
    body = answer["body"]
    assert body["maLoi"] == "0" and body["tenTrangThai"] == "Đủ điều kiện giải quyết"
    # The provider sees the accountability headers of the client the issuer speaks as.
    assert body["nguoiHoi"]["X-Client-Id"] == PORTAL
    assert body["nguoiHoi"]["X-Client-Agency"] == PORTAL_AGENCY
    assert body["nguoiHoi"]["X-Request-Id"] == answer["request_id"]
    assert national.jwks_fetches == 1  # the request path did not fetch

    [record] = await h.audit(answer["request_id"])
    assert (record.status, record.client_code, record.client_agency_code) == (
        200,
        PORTAL,
        PORTAL_AGENCY,
    )
    assert record.auth_method == "issuer" and record.issuer == ISSUER

    # The simulator's own endpoint does the same (what the demo uses).
    r = await h.http.post(
        f"{h.simulator_url}/_sim/call-in",
        json={"gateway": h.url, "path": STATUS, "audience": AUDIENCE},
    )
    assert r.json()["status"] == 200 and r.json()["body"]["maLoi"] == "0"


async def test_the_clients_rights_and_limits_apply_to_the_issuers_tokens(gateway: Harness) -> None:
    h = gateway
    await trust_national_platform(h)
    token = _national(h).mint(AUDIENCE)
    # Rights of the client: another service, or a method it was not granted, is refused.
    r = await get(h, token, f"{ECHO}/anything")
    assert_problem(r, 403, "access-denied")
    r = await h.http.delete(STATUS, headers={"Authorization": f"Bearer {token}"})
    assert_problem(r, 403, "access-denied")
    [record] = (await h.audit())[-1:]
    assert record.status == 403 and record.issuer == ISSUER and record.client_code == PORTAL

    # The client's limits too: one call a minute, then a 429.
    def limit(doc: dict[str, Any]) -> None:
        doc["rate_limits"].append({"client": PORTAL, "rate": {"requests": 1, "per": "minute"}})

    async with h.state.sessions() as s, s.begin():
        await policy_state.edit_policy(s, limit, actor="t", source="t")
    await reload_config(h.state)
    assert (await get(h, token)).status_code == 200
    r = await get(h, token)
    assert_problem(r, 429, "rate-limited")
    # The gateway's own tokens still work beside them, audited without an issuer.
    own = await h.token("motcua")
    r = await get(h, own, f"{ECHO}/anything")
    assert r.status_code == 200, r.text
    assert (await h.audit())[-1].issuer is None


# -- refusals, each naming what failed --------------------------------------------------------


@pytest.mark.parametrize(
    ("flaw", "detail"),
    [
        ({"issuer": "https://other-platform.example"}, "issuer 'https://other-platform.example'"),
        ({"audience": "urn:lgsp:000.00.00.H26"}, "audience must be 'urn:lgsp:000.00.00.H49'"),
        ({"issued_at": time.time() - 1000}, "expired"),
        ({"lifetime": 2 * 3600}, "3600 s at most"),
        ({"alg": "HS256"}, "'HS256' are not accepted"),
        ({"alg": "none"}, "'none' are not accepted"),
        ({"alg": "RS512"}, "'RS512' are not accepted"),
    ],
    ids=["unknown-issuer", "wrong-audience", "expired", "too-long", "hs256", "none", "rs512"],
)
async def test_a_flawed_token_is_refused_naming_the_flaw(
    gateway: Harness, flaw: dict[str, Any], detail: str
) -> None:
    h = gateway
    await trust_national_platform(h)
    flaw = dict(flaw)  # the parameters are shared by the database variants
    audience = flaw.pop("audience", AUDIENCE)
    token = _national(h).mint(audience, **flaw)
    r = await get(h, token)
    body = assert_problem(r, 401, "invalid-token", detail)
    assert "invalid_token" in r.headers["WWW-Authenticate"]
    [record] = await h.audit(body["request_id"])
    assert record.status == 401 and record.error_type == "invalid-token"


async def test_a_disabled_issuer_or_client_is_refused(gateway: Harness) -> None:
    h = gateway
    await trust_national_platform(h, enabled=False)
    r = await get(h, _national(h).mint(AUDIENCE))
    assert_problem(r, 401, "invalid-token", "neither this gateway nor an issuer it trusts")

    def enable_issuer_disable_client(doc: dict[str, Any]) -> None:
        doc["issuers"][0]["enabled"] = True
        next(c for c in doc["clients"] if c["code"] == PORTAL)["enabled"] = False

    async with h.state.sessions() as s, s.begin():
        await policy_state.edit_policy(s, enable_issuer_disable_client, actor="t", source="t")
    await reload_config(h.state)
    r = await get(h, _national(h).mint(AUDIENCE))
    assert_problem(r, 401, "invalid-token", f"client {PORTAL!r}")


# -- keys: unknown kids, rotation, cache headers ----------------------------------------------


async def test_an_unknown_kid_refreshes_once_per_interval_then_is_refused(
    gateway: Harness,
) -> None:
    h = gateway
    clock = await trust_national_platform(h)
    national = _national(h)
    forged = national.mint(AUDIENCE, kid="made-up")
    # Just fetched: no new fetch for an unknown kid within the interval.
    r = await get(h, forged)
    assert_problem(r, 401, "invalid-token", "'made-up'")
    assert national.jwks_fetches == 1
    # Once the interval has passed, one fetch; the kid is still unknown: refused.
    clock.now += 31
    r = await get(h, forged)
    assert_problem(r, 401, "invalid-token", "does not publish")
    assert national.jwks_fetches == 2
    # A burst of made-up kids, all at once, costs at most one fetch per interval.
    clock.now += 31
    burst = [national.mint(AUDIENCE, kid=f"made-up-{i}") for i in range(20)]
    answers = await asyncio.gather(*(get(h, t) for t in burst))
    assert {a.status_code for a in answers} == {401}
    assert national.jwks_fetches == 3
    answers = await asyncio.gather(*(get(h, t) for t in burst))
    assert national.jwks_fetches == 3
    # Good tokens kept working throughout.
    assert (await get(h, national.mint(AUDIENCE))).status_code == 200


async def test_a_key_rotation_at_the_platform_is_picked_up(gateway: Harness) -> None:
    h = gateway
    clock = await trust_national_platform(h)
    national = _national(h)
    before = national.mint(AUDIENCE)
    assert (await get(h, before)).status_code == 200

    clock.now += 31
    national.rotate(retire=True)  # a new key; the old one withdrawn
    after = national.mint(AUDIENCE)
    assert (await get(h, after)).status_code == 200  # unknown kid: fetched, then found
    assert national.jwks_fetches == 2
    assert h.state.issuers.key_ids(ISSUER) == [national.kid]
    # A token of the withdrawn key no longer passes, though it was verified before.
    r = await get(h, before)
    assert_problem(r, 401, "invalid-token", "does not publish")


@pytest.mark.parametrize(
    ("max_age", "kept"),
    [(120, 120), (5, 60), (None, 300), (10**9, 86_400)],
    ids=["as-told", "at-least-60s", "default-300s", "at-most-a-day"],
)
async def test_jwks_cache_headers_are_honoured_within_bounds(
    gateway: Harness, max_age: int | None, kept: int
) -> None:
    h = gateway
    national = _national(h)
    national.jwks_max_age = max_age
    clock = await trust_national_platform(h)
    entries = h.state.pipeline.config.issuers
    assert h.state.issuers.fresh_for(ISSUER) == kept
    clock.now += kept - 1
    await h.state.issuers.refresh_due(entries)
    assert national.jwks_fetches == 1  # still fresh: no fetch
    clock.now += 2
    await h.state.issuers.refresh_due(entries)
    assert national.jwks_fetches == 2  # due: fetched again, in the background


async def test_a_failing_jwks_keeps_the_keys_it_had(gateway: Harness) -> None:
    h = gateway
    clock = await trust_national_platform(h)
    national = _national(h)
    national.jwks_status = 503
    clock.now += 301  # due
    await h.state.issuers.refresh_due(h.state.pipeline.config.issuers)
    assert national.jwks_fetches == 2
    assert (await get(h, national.mint(AUDIENCE))).status_code == 200  # the keys it had
    assert h.state.issuers.fresh_for(ISSUER) == 30  # tried again after the interval
    health = (await h.http.get("/healthz")).json()["issuers"][ISSUER]
    assert health == {"keys": 1, "refresh_in_s": 30.0, "failing": True}


async def test_the_jwks_url_obeys_the_outbound_rules_when_fetched(gateway: Harness) -> None:
    h = gateway
    # Applied without the outbound check (an old policy, a changed allow-list): the
    # gateway, allowed loopback only, still never calls a private address for keys.
    clock = await trust_national_platform(h)

    def private_jwks(doc: dict[str, Any]) -> None:
        doc["issuers"][0]["jwks_url"] = "http://10.255.255.1/.well-known/jwks.json"

    async with h.state.sessions() as s, s.begin():
        await policy_state.edit_policy(s, private_jwks, actor="t", source="t")
    await reload_config(h.state)
    clock.now += 31
    await h.state.issuers.refresh_due(h.state.pipeline.config.issuers)
    r = await get(h, _national(h).mint(AUDIENCE))
    assert_problem(r, 401, "invalid-token", "could not fetch the keys")
    assert "10.255" not in r.text  # why is in the log, not told to the caller


def test_expires_is_read_when_there_is_no_cache_control() -> None:
    now = 1_700_000_000.0
    assert cache_seconds(None, "Tue, 14 Nov 2023 22:23:20 GMT", now=now) == 600
    assert cache_seconds("no-cache", "Tue, 14 Nov 2023 22:23:20 GMT", now=now) == 0
    assert cache_seconds(None, "not a date", now=now) == 0
    assert cache_seconds(None, None) is None


# -- the policy entry ---------------------------------------------------------------------------


def _policy(**issuer: Any) -> dict[str, Any]:
    return {
        "agencies": [{"code": PORTAL_AGENCY, "name": "Portal"}],
        "clients": [{"code": PORTAL, "agency": PORTAL_AGENCY, "name": "Portal"}],
        "issuers": [
            {
                "issuer": ISSUER,
                "jwks_url": "https://ndxp.example/.well-known/jwks.json",
                "audience": AUDIENCE,
                "client": PORTAL,
                **issuer,
            }
        ],
    }


@pytest.mark.parametrize(
    ("issuer", "error"),
    [
        ({"algorithms": ["HS256"]}, "issuers.0.algorithms.0"),
        ({"algorithms": ["none"]}, "issuers.0.algorithms.0"),
        ({"algorithms": []}, "issuers.0.algorithms"),
        ({"client": "nobody"}, "issuers[0].client: no client 'nobody'"),
        ({"jwks_url": "file:///etc/passwd"}, "issuers.0.jwks_url"),
        ({"max_token_lifetime_seconds": 10**6}, "issuers.0.max_token_lifetime_seconds"),
    ],
)
def test_an_issuer_entry_is_validated_at_load(issuer: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError) as e:
        PolicySet.model_validate(_policy(**issuer))
    assert error in str(e.value).replace("\n  ", " ").replace(" -> ", "."), str(e.value)


def test_an_issuer_may_not_speak_as_a_client_with_roles() -> None:
    doc = _policy()
    doc["clients"][0]["roles"] = ["administrator"]
    with pytest.raises(ValueError, match="an external issuer speaks as a client without roles"):
        PolicySet.model_validate(doc)


async def test_issuer_changes_are_recorded_and_the_jwks_url_obeys_outbound_rules(
    gateway: Harness,
) -> None:
    h = gateway
    await trust_national_platform(h)
    async with h.state.sessions() as s:
        [event] = (
            await s.scalars(select(AdminEvent).where(AdminEvent.action == "policy.issuer"))
        ).all()
    assert (event.actor, event.target) == ("admin-api:quantri", ISSUER)
    assert event.before is None and event.after["client"] == PORTAL

    def metadata_jwks(doc: dict[str, Any]) -> None:
        doc["issuers"][0]["jwks_url"] = "http://169.254.169.254/latest/meta-data/jwks"

    outbound = OutboundPolicy(["loopback"], ["http", "https"])
    async with h.state.sessions() as s, s.begin():
        with pytest.raises(policy_state.PolicyRejected, match=r"issuers\[0\]\.jwks_url"):
            await policy_state.edit_policy(
                s, metadata_jwks, actor="t", source="t", outbound=outbound
            )
