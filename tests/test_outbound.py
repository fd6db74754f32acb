"""Outbound safety: a policy cannot point the gateway at internal hosts.

Unit tests of the allow-list (`OutboundPolicy`, `GuardedResolver`), then exchanges through
the running gateway (SQLite and PostgreSQL) whose upstream, the simulator, is on
127.0.0.1: refused when loopback is not allowed — by IP literal, by a name that resolves
to loopback, for forwarding and for the upstream token — and audited; served when it is.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from gateway.config import versions as policy_state
from gateway.config.runtime import UpstreamEntry
from gateway.core.problems import Problem
from gateway.core.settings import Settings
from gateway.edge.app import create_app, reload_config
from gateway.upstream.allowlist import (
    AddressRefused,
    GuardedResolver,
    OutboundPolicy,
    OutboundRefused,
)
from gateway.upstream.client import UpstreamClient
from simulator.app import LOOKUPS, TOKENS_ISSUED
from tests import conftest
from tests.conftest import ECHO, POPULATION, Harness

DEFAULT = ["public", "private"]
REFUSED = "urn:lgsp:problem:upstream-address-refused"
ACCOUNT = {"X-Officer-Id": "CB-0042", "X-Procedure-Code": "1.001234"}


def policy(*networks: str, schemes: tuple[str, ...] = ("https", "http")) -> OutboundPolicy:
    return OutboundPolicy(networks, schemes)


def allowed(p: OutboundPolicy, address: str) -> bool:
    return p.allows(ip_address(address))


# -- the allow-list -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("10.20.30.40", True),
        ("172.16.0.1", True),
        ("192.168.1.10", True),
        ("100.64.0.1", True),  # RFC 6598 carrier-grade NAT, "private"
        ("fd12:3456::1", True),  # unique local, "private"
        ("127.0.0.1", False),
        ("127.8.9.10", False),
        ("::1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("169.254.1.1", False),
        ("fe80::1", False),
        ("fd00:ec2::254", False),  # AWS's IPv6 metadata address, though in fc00::/7
        ("224.0.0.251", False),
        ("ff02::1", False),
        ("0.0.0.0", False),
        ("0.1.2.3", False),
        ("::", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("192.0.2.1", False),  # documentation
        ("2001:db8::1", False),
    ],
)
def test_default_allows_public_and_private_only(address: str, expected: bool) -> None:
    assert allowed(policy(*DEFAULT), address) is expected


def test_names_select_their_networks() -> None:
    loopback = policy("loopback")
    assert allowed(loopback, "127.0.0.1") and allowed(loopback, "::1")
    assert not allowed(loopback, "10.0.0.1") and not allowed(loopback, "8.8.8.8")

    private = policy("private")
    assert allowed(private, "10.0.0.1") and allowed(private, "100.127.255.254")
    assert not allowed(private, "100.128.0.1")  # just past 100.64.0.0/10
    assert not allowed(private, "8.8.8.8") and not allowed(private, "127.0.0.1")

    public = policy("public")
    assert allowed(public, "8.8.8.8") and allowed(public, "2a00:1450::1")
    assert not allowed(public, "10.0.0.1") and not allowed(public, "fc00::1")
    # A name is matched whatever its case, as a person may write it in a YAML file.
    assert allowed(policy("Loopback"), "127.0.0.1")


def test_cidrs_allow_exactly_their_addresses() -> None:
    p = policy("10.1.0.0/16", "2001:db8:1::/48", "192.0.2.7")
    assert allowed(p, "10.1.255.255") and not allowed(p, "10.2.0.0")
    assert allowed(p, "2001:db8:1::5") and not allowed(p, "2001:db8:2::5")
    assert allowed(p, "192.0.2.7") and not allowed(p, "192.0.2.8")  # a bare address is a /32
    # A link-local address is refused by every name but allowed by a CIDR that names it.
    assert not allowed(policy("public", "private", "loopback"), "169.254.169.254")
    assert not allowed(policy("public", "private", "loopback"), "fd00:ec2::254")
    assert allowed(policy("fd00:ec2::254/128"), "fd00:ec2::254")
    assert allowed(policy("169.254.169.254/32"), "169.254.169.254")
    assert allowed(policy("fe80::/10"), "fe80::1%eth0")


def test_ipv4_mapped_ipv6_is_judged_as_the_ipv4_address() -> None:
    default = policy(*DEFAULT)
    assert not allowed(default, "::ffff:127.0.0.1")
    assert not allowed(default, "::ffff:169.254.169.254")
    assert allowed(default, "::ffff:8.8.8.8")
    assert allowed(default, "::ffff:10.0.0.1")
    assert allowed(policy("loopback"), "::ffff:127.0.0.1")
    # An IPv6 CIDR covering the mapped range does not smuggle IPv4 loopback in.
    assert not allowed(policy("::ffff:0:0/96"), "::ffff:127.0.0.1")
    # NAT64 (64:ff9b::/96) carries an IPv4 address too.
    assert allowed(default, "64:ff9b::808:808")
    assert not allowed(default, "64:ff9b::7f00:1")


@pytest.mark.parametrize(
    ("networks", "schemes", "named"),
    [
        (["publc"], ["http"], "'publc'"),
        (["10.0.0.1/8"], ["http"], "'10.0.0.1/8'"),  # host bits set: a typo, most likely
        (["10.0.0.0/33"], ["http"], "'10.0.0.0/33'"),
        (["public", "intranet"], ["http"], "'intranet'"),
        ([], ["http"], "LGSP_UPSTREAM_ALLOWED_NETWORKS is empty"),
        (["public"], ["ftp"], "'ftp'"),
        (["public"], ["file"], "'file'"),
        (["public"], [], "LGSP_UPSTREAM_ALLOWED_SCHEMES is empty"),
    ],
)
def test_bad_setting_entries_are_rejected_by_name(
    networks: list[str], schemes: list[str], named: str
) -> None:
    with pytest.raises(ValueError, match="LGSP_UPSTREAM_ALLOWED_") as e:
        OutboundPolicy(networks, schemes)
    assert named in str(e.value)


def test_a_bad_setting_stops_the_gateway_from_starting(tmp_path: Any) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        keys_dir=tmp_path / "keys",
        upstream_allowed_networks=["public", "privat"],
    )
    with pytest.raises(ValueError, match="'privat'"):
        create_app(settings)


def test_settings_come_from_json_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGSP_UPSTREAM_ALLOWED_NETWORKS", '["private", "203.0.113.0/24"]')
    monkeypatch.setenv("LGSP_UPSTREAM_ALLOWED_SCHEMES", '["https"]')
    p = OutboundPolicy.from_settings(Settings())
    assert allowed(p, "203.0.113.9") and allowed(p, "10.0.0.1")
    assert not allowed(p, "8.8.8.8")
    with pytest.raises(OutboundRefused, match="'http' is not allowed"):
        p.check_url("http://10.0.0.1/")
    p.check_url("https://10.0.0.1/")


def test_defaults_refuse_loopback_and_metadata() -> None:
    p = OutboundPolicy.from_settings(Settings())
    assert not allowed(p, "127.0.0.1") and not allowed(p, "169.254.169.254")
    assert allowed(p, "8.8.8.8") and allowed(p, "10.0.0.1")


# -- URLs ----------------------------------------------------------------------------------------


def test_check_url_refuses_literals_outside_the_list_saying_what_to_set() -> None:
    p = policy(*DEFAULT)
    with pytest.raises(OutboundRefused) as e:
        p.check_url("http://127.0.0.1:8090/api")
    message = str(e.value)
    assert "127.0.0.1 (loopback)" in message
    assert """LGSP_UPSTREAM_ALLOWED_NETWORKS='["public", "private", "loopback"]'""" in message

    with pytest.raises(OutboundRefused, match=r"::ffff:7f00:1 \(loopback\)"):
        p.check_url("https://[::ffff:127.0.0.1]/")
    with pytest.raises(OutboundRefused, match=r"169\.254\.169\.254") as e:
        p.check_url("http://169.254.169.254/latest/meta-data/iam/")
    assert "metadata" in str(e.value)
    with pytest.raises(OutboundRefused, match=r"fe80::1%eth0 \(link-local\)"):
        p.check_url("http://[fe80::1%25eth0]:8080/")
    # Legacy numeric spellings of 127.0.0.1 are refused at once, not left to the resolver.
    for sneaky in ("http://2130706433/", "http://0x7f000001/", "http://127.1/"):
        with pytest.raises(OutboundRefused, match=r"127\.0\.0\.1"):
            p.check_url(sneaky)
    # Credentials and query strings in the URL are not repeated in the message.
    with pytest.raises(OutboundRefused) as e:
        p.check_url("http://user:hunter2@127.0.0.1/?key=s3cr3t")
    assert "hunter2" not in str(e.value) and "s3cr3t" not in str(e.value)


def test_check_url_refuses_schemes_outside_the_list() -> None:
    p = policy(*DEFAULT, schemes=("https",))
    with pytest.raises(OutboundRefused, match="LGSP_UPSTREAM_ALLOWED_SCHEMES") as e:
        p.check_url("http://ndxp.example.vn/api")
    assert "'http' is not allowed" in str(e.value)
    with pytest.raises(OutboundRefused, match="'file' is not allowed"):
        policy(*DEFAULT).check_url("file:///etc/passwd")
    with pytest.raises(OutboundRefused, match="no host"):
        policy(*DEFAULT).check_url("http:///path")


def test_check_url_accepts_allowed_literals_and_defers_names() -> None:
    p = policy(*DEFAULT)
    p.check_url("https://8.8.8.8/")
    p.check_url("http://10.0.0.5:8080/x")
    p.check_url("HTTPS://[2606:4700::1]/")
    # A name is judged when it is resolved (its addresses may change): not here.
    p.check_url("http://localhost:8090/")
    p.check_url("https://ndxp.gov.vn/")


# -- the resolver ---------------------------------------------------------------------------------


class FakeResolver(AbstractResolver):
    """Answers from a table that a test may change, as a DNS server can between lookups."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": a,
                "port": port,
                "family": socket.AF_INET6 if ":" in a else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for a in self.answers[host]
        ]

    async def close(self) -> None:
        self.closed = True


async def test_resolver_keeps_allowed_addresses_and_refuses_when_none_remain() -> None:
    inner = FakeResolver(
        {
            "mixed.example": ["127.0.0.1", "10.0.0.7", "169.254.169.254", "fd00::7"],
            "internal.example": ["127.0.0.1", "::1"],
        }
    )
    guarded = GuardedResolver(policy(*DEFAULT), inner)
    kept = await guarded.resolve("mixed.example", 443, socket.AF_UNSPEC)
    assert [r["host"] for r in kept] == ["10.0.0.7", "fd00::7"]

    with pytest.raises(AddressRefused) as e:
        await guarded.resolve("internal.example", 443, socket.AF_UNSPEC)
    assert isinstance(e.value, OSError)
    assert e.value.refused == (IPv4Address("127.0.0.1"), IPv6Address("::1"))
    message = str(e.value)
    assert "internal.example" in message
    assert "127.0.0.1 (loopback), ::1 (loopback)" in message
    assert "LGSP_UPSTREAM_ALLOWED_NETWORKS" in message
    await guarded.close()
    assert inner.closed


async def test_resolver_judges_each_lookup_so_rebinding_is_refused() -> None:
    inner = FakeResolver({"ndxp.example": ["203.0.113.10"]})
    guarded = GuardedResolver(policy("203.0.113.0/24", "private"), inner)
    assert [r["host"] for r in await guarded.resolve("ndxp.example", 443)] == ["203.0.113.10"]
    inner.answers["ndxp.example"] = ["169.254.169.254"]  # the name is rebound
    with pytest.raises(AddressRefused, match="metadata"):
        await guarded.resolve("ndxp.example", 443)


# -- the upstream token request ---------------------------------------------------------------


async def test_a_token_endpoint_redirect_is_not_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A redirect could lead to an IP literal no resolver sees: with an outbound policy the
    gateway does not follow it, and says to configure the final address."""
    followed: list[str] = []

    async def token(request: web.Request) -> web.Response:
        # Followed, this would be quick (same server), and recorded.
        raise web.HTTPFound("/latest/meta-data/")

    async def elsewhere(request: web.Request) -> web.Response:
        followed.append(request.path)
        return web.json_response({"access_token": "t", "expires_in": 300})

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_route("*", "/{tail:.*}", elsewhere)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    monkeypatch.setenv("LGSP_UPSTREAM_SECRET_TEST_REDIRECT", "s")
    upstream = UpstreamEntry(
        "redirecting",
        str(server.make_url("")).rstrip("/"),
        {
            "type": "oauth2_client_credentials",
            "token_url": "/token",
            "client_id": "c",
            "client_secret_env": "LGSP_UPSTREAM_SECRET_TEST_REDIRECT",
        },
    )
    client = UpstreamClient(outbound=policy("loopback"))
    await client.start()
    try:
        assert client.tokens is not None
        with pytest.raises(Problem) as e:
            await client.tokens.authorization(upstream)
        assert e.value.ptype.slug == "upstream-authentication-failed"
        assert "redirect (HTTP 302)" in e.value.detail
        assert "token_url" in e.value.detail
        assert followed == []
    finally:
        await client.close()
        await server.close()


# -- through the running gateway --------------------------------------------------------------


@pytest.fixture
def networks() -> list[str]:
    return ["loopback"]


@pytest.fixture
def schemes() -> list[str]:
    return ["https", "http"]


@pytest.fixture
def settings(settings: Settings, networks: list[str], schemes: list[str]) -> Settings:
    return settings.model_copy(
        update={"upstream_allowed_networks": networks, "upstream_allowed_schemes": schemes}
    )


async def refused(gateway: Harness, r: Any, *, detail: str) -> dict[str, Any]:
    """Check a 502 upstream-address-refused problem and its audit record."""
    assert r.status_code == 502, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"] == REFUSED
    assert body["type"].endswith("upstream-address-refused")
    assert body["side"] == "gateway"
    assert detail in body["detail"], body["detail"]
    [record] = await gateway.audit(body["request_id"])
    assert record.status == 502
    assert record.error_type == "upstream-address-refused"
    assert record.error_detail == body["detail"]
    assert record.upstream_status is None
    return body


async def use_simulator_at(gateway: Harness, base_url: str) -> None:
    """Point the test policy's upstreams at `base_url` (the simulator, by another name)."""
    async with gateway.state.sessions() as s, s.begin():
        await policy_state.apply_policy(
            s, conftest.test_policy(base_url, "http://127.0.0.1:9"), actor="test"
        )
    await reload_config(gateway.state)


async def test_loopback_allowed_the_call_goes_through(gateway: Harness) -> None:
    headers = {"Authorization": f"Bearer {await gateway.token()}"}
    r = await gateway.http.post(f"{ECHO}/hello", headers=headers, content=b"ping")
    assert r.status_code == 200, r.text
    [record] = await gateway.audit(r.headers["x-request-id"])
    assert record.status == 200


@pytest.mark.parametrize("networks", [DEFAULT])
async def test_upstream_on_loopback_literal_is_refused_and_audited(gateway: Harness) -> None:
    headers = {"Authorization": f"Bearer {await gateway.token()}"}
    r = await gateway.http.post(f"{ECHO}/hello", headers=headers, content=b"ping")
    body = await refused(gateway, r, detail="LGSP_UPSTREAM_ALLOWED_NETWORKS")
    assert "127.0.0.1 (loopback)" in body["detail"]
    assert '"loopback"' in body["detail"]  # what to add, spelled as the setting wants it


@pytest.mark.parametrize("networks", [DEFAULT])
async def test_upstream_token_from_loopback_is_refused(gateway: Harness) -> None:
    """The national service takes an OAuth2 token from its upstream first: that request is
    refused too, before any credentials leave the gateway."""
    headers = {"Authorization": f"Bearer {await gateway.token()}", **ACCOUNT}
    r = await gateway.http.post(
        f"{POPULATION}/cong-dan/tra-cuu", headers=headers, json={"SoDinhDanh": "001099012345"}
    )
    body = await refused(gateway, r, detail="token URL of upstream 'ndxp'")
    assert "LGSP_UPSTREAM_ALLOWED_NETWORKS" in body["detail"]
    assert gateway.simulator[TOKENS_ISSUED] == 0
    assert gateway.simulator[LOOKUPS] == []


@pytest.mark.parametrize("networks", [DEFAULT])
async def test_a_name_resolving_to_loopback_is_refused(gateway: Harness) -> None:
    await use_simulator_at(gateway, gateway.simulator_url.replace("127.0.0.1", "localhost"))
    headers = {"Authorization": f"Bearer {await gateway.token()}"}
    r = await gateway.http.post(f"{ECHO}/hello", headers=headers, content=b"ping")
    body = await refused(gateway, r, detail="localhost resolves only to addresses outside")
    assert "(loopback)" in body["detail"]
    assert "LGSP_UPSTREAM_ALLOWED_NETWORKS" in body["detail"]
    # Its token fetch is refused at connection time as well.
    r = await gateway.http.post(
        f"{POPULATION}/cong-dan/tra-cuu",
        headers={**headers, **ACCOUNT},
        json={"SoDinhDanh": "001099012345"},
    )
    await refused(gateway, r, detail="token URL of upstream 'ndxp'")
    assert gateway.simulator[TOKENS_ISSUED] == 0


async def test_a_name_resolving_to_loopback_works_once_loopback_is_allowed(
    gateway: Harness,
) -> None:
    await use_simulator_at(gateway, gateway.simulator_url.replace("127.0.0.1", "localhost"))
    headers = {"Authorization": f"Bearer {await gateway.token()}", **ACCOUNT}
    r = await gateway.http.post(
        f"{POPULATION}/cong-dan/tra-cuu", headers=headers, json={"SoDinhDanh": "001099012345"}
    )
    assert r.status_code == 200, r.text
    assert gateway.simulator[TOKENS_ISSUED] == 1


async def test_metadata_address_is_refused_even_with_loopback_allowed(gateway: Harness) -> None:
    await use_simulator_at(gateway, "http://169.254.169.254")
    headers = {"Authorization": f"Bearer {await gateway.token()}"}
    r = await gateway.http.get(f"{ECHO}/latest/meta-data/", headers=headers)
    body = await refused(gateway, r, detail="169.254.169.254")
    assert "metadata" in body["detail"]


@pytest.mark.parametrize("schemes", [["https"]])
async def test_a_scheme_outside_the_list_is_refused(gateway: Harness) -> None:
    headers = {"Authorization": f"Bearer {await gateway.token()}"}
    r = await gateway.http.post(f"{ECHO}/hello", headers=headers, content=b"ping")
    body = await refused(gateway, r, detail="LGSP_UPSTREAM_ALLOWED_SCHEMES")
    assert "'http' is not allowed" in body["detail"]
