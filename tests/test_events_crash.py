"""`lgsp serve` SIGKILLed while deliveries are in flight, then started again on the same
store: every event is delivered, none lost, in order per key, a repeat only as at least
once allows and with the same webhook-id (counted)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook

from gateway.admin import credentials as credential_ops
from gateway.config import versions as policy_state
from gateway.config.policy import PolicySet
from gateway.store.db import create_engine, session_factory
from tests.conftest import PROVINCE_ID, GatewayProcess, free_port

pytestmark = pytest.mark.dialects("sqlite", "postgresql")

POLICY = {
    "agencies": [{"code": PROVINCE_ID, "name": "UBND"}],
    "clients": [
        {"code": "dancu", "agency": PROVINCE_ID, "name": "Publisher"},
        {"code": "motcua", "agency": PROVINCE_ID, "name": "Subscriber"},
        {"code": "quantri", "agency": PROVINCE_ID, "name": "Admin", "roles": ["administrator"]},
    ],
    "topics": [
        {
            "code": "ho-so",
            "name": "Dossier updates",
            "provider": PROVINCE_ID,
            "publishers": ["dancu"],
            "access": [{"client": "motcua"}],
        }
    ],
}


async def token(http: httpx.AsyncClient, client: str, secret: str) -> dict[str, str]:
    r = await http.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client, secret)
    )
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_a_gateway_killed_mid_delivery_loses_nothing(
    database_url: str, tmp_path: Path
) -> None:
    engine = create_engine(database_url)
    async with session_factory(engine)() as s, s.begin():
        await policy_state.commit_policy(
            s, PolicySet.model_validate(POLICY), actor="test", source="apply"
        )
        secrets = {
            c: await credential_ops.issue(s, client_code=c, kind="secret", actor="t")
            for c in ("dancu", "quantri")
        }
    await engine.dispose()

    hold = asyncio.Event()
    got: list[tuple[dict[str, str], bytes]] = []
    waiting = 0

    async def receive(request: web.Request) -> web.Response:
        nonlocal waiting
        body = await request.read()
        if not hold.is_set():
            waiting += 1
            await hold.wait()
        got.append(({k.lower(): v for k, v in request.headers.items()}, body))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", receive)
    receiver = TestServer(app, host="127.0.0.1")
    await receiver.start_server()
    port = free_port()
    env = {
        **os.environ,
        "LGSP_DATABASE_URL": database_url,
        "LGSP_PORT": str(port),
        "LGSP_KEYS_DIR": str(tmp_path / "keys"),
        "LGSP_SCHEMAS_DIR": "",
        "LGSP_WORKERS": "1",
        "LGSP_UPSTREAM_ALLOWED_NETWORKS": '["loopback"]',
        "LGSP_LOG_LEVEL": "WARNING",
        "LGSP_EVENTS_DELIVERY_TIMEOUT_SECONDS": "1",
        "LGSP_EVENTS_BACKOFF_INITIAL_SECONDS": "0.05",
        "LGSP_EVENTS_BACKOFF_MAX_SECONDS": "0.5",
        "LGSP_EVENTS_POLL_SECONDS": "0.05",
    }
    gw = GatewayProcess(env, port, tmp_path / "gateway.log")
    gw.start()
    try:
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            admin = await token(http, "quantri", secrets["quantri"])
            publisher = await token(http, "dancu", secrets["dancu"])
            body = {
                "topic": "ho-so",
                "client": "motcua",
                "callback_url": str(receiver.make_url("/hooks")),
            }
            r = await http.post("/admin/v1/subscriptions", json=body, headers=admin)
            assert r.status_code == 201, r.text
            secret = r.json()["secret"]
            sent: dict[str, list[str]] = {"a": [], "b": [], "c": [], "d": []}
            for n in range(40):
                key = "abcd"[n % 4]
                event = {"type": "dossier.updated", "key": key, "data": {"n": n}}
                r = await http.post("/events/v1/ho-so", json=event, headers=publisher)
                assert r.status_code == 202, r.text
                sent[key].append(r.json()["id"])
            deadline = time.monotonic() + 30
            while waiting < 4 and time.monotonic() < deadline:  # one per key in flight
                await asyncio.sleep(0.05)
            assert waiting >= 4, "no deliveries in flight"
        gw.kill()  # SIGKILL, deliveries in flight
        hold.set()
        gw.start()  # the same store, a new process
        every = {i for ids in sent.values() for i in ids}
        deadline = time.monotonic() + 60
        while {h["webhook-id"] for h, _ in got} != every and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        ids = [h["webhook-id"] for h, _ in got]
        assert set(ids) == every, f"{len(every - set(ids))} of {len(every)} events lost"
        # Counted: repeats only for the deliveries in flight at the kill.
        repeats = len(ids) - len(every)
        assert 0 <= repeats <= waiting
        hook = Webhook(secret)
        for key, keyed in sent.items():
            first = [i for i in dict.fromkeys(ids) if i in keyed]
            assert first == keyed, key  # in order per key
        for headers, payload in got:
            assert orjson.loads(payload)["id"] == headers["webhook-id"]
            hook.verify(payload, headers)  # every one signed, repeats included
    finally:
        gw.kill()
        hold.set()
        await receiver.close()
