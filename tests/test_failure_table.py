"""The rows of the docs' "What is lost in which failure" table that no other module
counts (issue 21): the store stopped in embedded mode, the spool's bound reached while
the broker is away, a node lost with its disk, and a spool corrupted on disk. Each runs
the gateway as its own process against PostgreSQL (and Tansu), sends a fail_closed
service (the test policy's echo) and a fail_open one side by side with request ids of
its own, and counts per request id what the caller was answered, what reached the
provider, what the audit store holds and what the gateway's log names. The other rows:
docs/auditor.md.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from sqlalchemy import select

from gateway.audit.verify import verify_store
from gateway.store.db import create_engine, session_factory
from gateway.store.models import AuditFinding
from tests.conftest import ECHO

__all__ = ["broker"]
from tests.fault_rig import (
    ECHO_OPEN,
    Answer,
    Broker,
    Relay,
    gateway_env,
    indexer_running,
    logged,
    process,
    records,
    seed,
    send,
    token,
    until,
    upstream,
)

pytestmark = pytest.mark.dialects("postgresql")

NOT_DURABLE = "AUDIT EVENT NOT DURABLE"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker.running(tmp_path) as b:
        yield b


def _through(database_url: str, relay: Relay) -> str:
    """`database_url`, reached through `relay`."""
    u = urlsplit(database_url)
    user = u.netloc.rpartition("@")[0]
    return urlunsplit(u._replace(netloc=f"{user}@127.0.0.1:{relay.port}" if user else ""))


async def _both(url: str, bearer: str, n: int, stop: asyncio.Event | None = None) -> list[Answer]:
    """`n` exchanges each with the fail_closed echo and the fail_open one, at once."""
    closed, open_ = await asyncio.gather(
        send(url, bearer, f"{ECHO}/t", n, prefix="closed", stop=stop),
        send(url, bearer, f"{ECHO_OPEN}/t", n, prefix="open", stop=stop),
    )
    return closed + open_


def _named(log: Path) -> Counter[str]:
    """Per request id, the events the log says could not be made durable."""
    return Counter(str(e["request_id"]) for e in logged(log, NOT_DURABLE))


def _ready(gw_url: str) -> int:
    return httpx.get(gw_url + "/readyz", timeout=10).status_code


class Tally:
    """What the fail_closed and the fail_open callers got, what the store and the log
    hold, per request id; `check` asserts the table's promises and returns the counts."""

    def __init__(
        self,
        answers: list[Answer],
        stored: dict[str, Counter[str]],
        reached: Counter[str],
        named: Counter[str],
    ) -> None:
        self.answers, self.stored, self.reached, self.named = answers, stored, reached, named

    def check(self) -> dict[str, int]:
        closed = [a for a in self.answers if a.request_id.startswith("closed")]
        open_ = [a for a in self.answers if a.request_id.startswith("open")]
        intent, outcome, single = self.stored["intent"], self.stored["outcome"], self.stored[""]
        # Every caller got an answer: nothing reset, nothing hung.
        assert not [a for a in self.answers if a.status == 0]
        # fail_closed: 200 only with its intent and outcome stored once each; otherwise a
        # 503 audit-unavailable, never stored as answered, and named in the log.
        assert {(a.status, a.problem) for a in closed} <= {(200, None), (503, "audit-unavailable")}
        ok = [a.request_id for a in closed if a.status == 200]
        refused = [a.request_id for a in closed if a.status == 503]
        assert [r for r in ok if (intent[r], outcome[r]) != (1, 1)] == []
        assert [r for r in refused if outcome[r]] == []
        assert [r for r in refused if not self.named[r]] == []
        # What reached the provider has a durable intent: never "asked and nobody knows".
        assert [
            a.request_id for a in closed if self.reached[a.request_id] and not intent[a.request_id]
        ] == []
        # fail_open: always answered; stored once, or not at all and named in the log.
        assert {a.status for a in open_} <= {200}
        open_lost = [a.request_id for a in open_ if not single[a.request_id]]
        assert [a.request_id for a in open_ if single[a.request_id] > 1] == []
        assert [r for r in open_lost if not self.named[r]] == []
        return {
            "closed_sent": len(closed),
            "closed_200_audited_once": len(ok),
            "closed_503_refused_before_forwarding": sum(
                1 for r in refused if not self.reached[r] and not intent[r]
            ),
            "closed_503_after_forwarding_intent_only": sum(1 for r in refused if intent[r]),
            "open_sent": len(open_),
            "open_200_audited_once": len(open_) - len(open_lost),
            "open_200_lost_named_in_log": len(open_lost),
        }


@pytest.mark.parametrize("when", ["idle", "under-load"])
async def test_the_store_stopped_in_embedded_mode(
    database_url: str, tmp_path: Path, when: str
) -> None:
    """PostgreSQL is reached through a relay that is cut (every connection reset, every
    new one refused) for two seconds, with nothing in flight or under load; the store is
    the audit path (embedded mode), so the cut is an audit outage."""
    u = urlsplit(database_url)
    relay = Relay(u.hostname or "127.0.0.1", u.port or 5432)
    relay.restore()
    try:
        async with upstream() as sim:
            secret = (await seed(database_url, sim.url, fail_open_echo=True))["motcua"]
            env = gateway_env(_through(database_url, relay), tmp_path, "gw-store-out")
            gw = process(env, tmp_path / "gateway.log")
            gw.start()
            try:
                bearer = await token(gw, secret)
                answers = await _both(gw.url, bearer, 20)
                assert {a.status for a in answers} == {200}
                stop = asyncio.Event()
                load = (
                    asyncio.create_task(_both(gw.url, bearer, 100_000, stop))
                    if when == "under-load"
                    else None
                )
                await asyncio.sleep(0.3)
                relay.cut()
                if load is None:
                    answers += await _both(gw.url, bearer, 50)
                else:
                    await asyncio.sleep(2.0)
                not_ready = await asyncio.to_thread(_ready, gw.url)
                health = httpx.get(gw.url + "/healthz").json()
                relay.restore()

                async def ready() -> bool:
                    return await asyncio.to_thread(_ready, gw.url) == 200

                await until(ready, 60, "/readyz to say ready once the store is back")
                if load is not None:
                    await asyncio.sleep(0.5)
                    stop.set()
                    answers += await load
                answers += await _both(gw.url, bearer, 20)
            finally:
                gw.terminate()
            stored = await records(database_url)
            lost = logged(gw.log, NOT_DURABLE)
    finally:
        relay.close()

    assert not_ready == 503, health
    counts = Tally(answers, stored, sim.reached, _named(gw.log)).check()
    # The store was away: fail_closed callers were refused, fail_open ones lost events.
    assert counts["closed_503_refused_before_forwarding"] > 0, counts
    assert counts["open_200_lost_named_in_log"] > 0, counts
    # After it came back, everything was audited again.
    assert all(a.status == 200 for a in answers[-40:])
    print(when, counts, f"{NOT_DURABLE} lines: {len(lost)}")


async def test_the_spool_bound_reached_while_the_broker_is_away(
    database_url: str, broker: Broker, tmp_path: Path
) -> None:
    """`LGSP_AUDIT_SPOOL_MAX_BYTES` at its least (1 MiB), the broker stopped: the spool
    fills to its bound, then the broker comes back and takes it, with no restart."""
    topic = "lgsp.audit.bound"
    async with upstream() as sim:
        secret = (await seed(database_url, sim.url, fail_open_echo=True))["motcua"]
        env = gateway_env(
            database_url,
            tmp_path,
            "gw-bound",
            broker=broker,
            topic=topic,
            audit_spool_max_bytes=str(1024 * 1024),
        )
        gw = process(env, tmp_path / "gateway.log")
        gw.start()
        try:
            bearer = await token(gw, secret)
            async with indexer_running(database_url, broker, topic, 1, "bound-indexer"):
                answers = await _both(gw.url, bearer, 20)
                assert {a.status for a in answers} == {200}
                broker.stop()
                for _ in range(40):
                    got = await _both(gw.url, bearer, 100)
                    answers += got
                    if sum(a.problem == "audit-unavailable" for a in got) >= 50:
                        break
                else:
                    pytest.fail("the spool never reached its bound")
                full_ready = await asyncio.to_thread(_ready, gw.url)
                full_health = httpx.get(gw.url + "/healthz").json()["audit"]
                broker.start()  # a fresh broker on the same address

                async def ready() -> bool:
                    return await asyncio.to_thread(_ready, gw.url) == 200

                await until(ready, 60, "/readyz to say ready once the broker took the spool")
                answers += await _both(gw.url, bearer, 50)
                ok_closed = [
                    a.request_id
                    for a in answers
                    if a.request_id.startswith("closed") and a.status == 200
                ]
                ok_open = [a.request_id for a in answers if a.request_id.startswith("open")]

                async def indexed() -> bool:
                    stored = await records(database_url, "gw-bound")
                    named = _named(gw.log)
                    return all(stored["outcome"][r] for r in ok_closed) and all(
                        stored[""][r] or named[r] for r in ok_open
                    )

                await until(indexed, 60, "every exchange answered 200 to be indexed")
                stored = await records(database_url, "gw-bound")
        finally:
            gw.terminate()
    counts = Tally(answers, stored, sim.reached, _named(gw.log)).check()
    assert full_ready == 503
    assert full_health["spool_near_full"] is True, full_health
    # One alarm for the episode, at 80 % of the bound, before the first refusal.
    assert len(logged(gw.log, "audit spool near its bound")) == 1
    assert counts["closed_503_refused_before_forwarding"] >= 50, counts
    assert all(a.status == 200 for a in answers[-100:])
    print(counts)


async def test_a_node_lost_with_its_disk_loses_what_its_spool_had_not_shipped(
    database_url: str, broker: Broker, tmp_path: Path
) -> None:
    """Two gateways (two instances, one broker and store). The broker goes away for a
    moment while both answer; one node is then SIGKILLed and its spool directory deleted
    (the host and its disk lost) before the broker is back. What the audit loses is
    exactly the exchanges whose events were only in that spool: each is counted, the
    other node's exchanges are all audited, and nothing is stored twice."""
    topic = "lgsp.audit.node"
    async with upstream() as sim:
        secret = (await seed(database_url, sim.url, fail_open_echo=True))["motcua"]
        nodes = []
        for name in ("gw-node-lost", "gw-node-kept"):
            env = gateway_env(
                database_url,
                tmp_path,
                name,
                broker=broker,
                topic=topic,
                spool_dir=tmp_path / f"spool-{name}",
                public_url="http://gateway.test",  # one issuer: either takes the token
            )
            nodes.append(process(env, tmp_path / f"{name}.log"))
        lost_node, kept = nodes
        try:
            await asyncio.gather(*(asyncio.to_thread(gw.start) for gw in nodes))
            bearer = await token(lost_node, secret)
            async with indexer_running(database_url, broker, topic, 1, "node-indexer"):
                on_lost = await _both(lost_node.url, bearer, 30)
                on_kept = await _both(kept.url, bearer, 30)

                async def indexed() -> bool:
                    # Shipped and indexed: nothing waits on the broker alone when it goes
                    # (what a broker loses is tests/test_audit_reship.py's row).
                    for gw in nodes:
                        h = httpx.get(gw.url + "/healthz").json()["audit"]
                        if h["spool_records"] or h["spool_unindexed_records"]:
                            return False
                    return True

                await until(indexed, 60, "the first exchanges to be shipped and indexed")
                broker.stop()
                on_lost += await _both(lost_node.url, bearer, 25)
                on_kept += await _both(kept.url, bearer, 25)
                unshipped = int(
                    httpx.get(lost_node.url + "/healthz").json()["audit"]["spool_records"]
                )
                lost_node.kill()
                shutil.rmtree(tmp_path / "spool-gw-node-lost")
                broker.start()
                on_kept += await _both(kept.url, bearer, 20)
                kept_ok = [a.request_id for a in on_kept]

                async def kept_indexed() -> bool:
                    stored = await records(database_url, "gw-node-kept")
                    return all(stored["outcome"][r] or stored[""][r] for r in kept_ok)

                await until(kept_indexed, 60, "the kept node's exchanges to be indexed")
                await asyncio.sleep(1.0)  # the indexer has read everything the broker has
                stored_lost = await records(database_url, "gw-node-lost")
                stored_kept = await records(database_url, "gw-node-kept")
        finally:
            for gw in nodes:
                gw.terminate()

    assert {a.status for a in on_lost + on_kept} == {200}
    for stored in (stored_kept, stored_lost):
        assert [r for r, n in (stored["outcome"] + stored[""]).items() if n > 1] == []
    kept_missing = [
        a.request_id
        for a in on_kept
        if not (stored_kept["outcome"][a.request_id] or stored_kept[""][a.request_id])
    ]
    assert kept_missing == []
    lost = [
        a.request_id
        for a in on_lost
        if not (stored_lost["outcome"][a.request_id] or stored_lost[""][a.request_id])
    ]
    # Its chain verifies (the loss is its tail, after the last stored event: no gap
    # shows; the host's loss is what tells it), and so does the kept node's.
    engine = create_engine(database_url)
    try:
        report = await verify_store(session_factory(engine))
    finally:
        await engine.dispose()
    assert report.ok, report.as_dict()
    chain = {i.instance: i.events for i in report.instances}
    # What is lost is what the lost node's spool held unshipped, no more: its fail_closed
    # exchanges are two events each (intent and outcome), fail_open ones one, and the
    # spool may also have held a checkpoint.
    closed_lost = sum(r.startswith("closed") for r in lost)
    events_lost = 2 * closed_lost + (len(lost) - closed_lost)
    checkpoints = unshipped - events_lost
    assert 0 <= checkpoints <= 3, (events_lost, unshipped)
    # ... and all of them were answered while the broker was away: before, nothing.
    assert set(lost) <= {a.request_id for a in on_lost[-50:]}
    print(
        f"lost node: {len(on_lost)} answered, {len(lost)} not in the store "
        f"({closed_lost} fail_closed), {unshipped} spool records unshipped at the kill "
        f"({checkpoints} checkpoints); chain of the lost node: {chain}; "
        f"kept node: {len(on_kept)} answered, 0 missing"
    )


async def test_a_corrupted_spool_loses_the_damaged_record_and_says_so(
    database_url: str, broker: Broker, tmp_path: Path
) -> None:
    """The broker away, exchanges wait in the spool; the gateway is SIGKILLed, one byte of
    one spooled record is flipped on disk, and the gateway and the broker come back. The
    damaged record is quarantined and reported; every other exchange is audited once."""
    topic, instance = "lgsp.audit.corrupt", "gw-corrupt"
    async with upstream() as sim:
        secret = (await seed(database_url, sim.url, fail_open_echo=True))["motcua"]
        env = gateway_env(database_url, tmp_path, instance, broker=broker, topic=topic)
        gw = process(env, tmp_path / "gateway.log")
        gw.start()
        try:
            bearer = await token(gw, secret)
            broker.stop()
            answers = await _both(gw.url, bearer, 40)
            gw.kill()
            [segment] = sorted((tmp_path / "spool" / instance).glob("*.seg"))[-1:]
            data = bytearray(segment.read_bytes())
            frames = []  # (position, payload) of each record, as tests/test_spool.py reads them
            pos = 0
            while pos < len(data):
                _magic, _offset, length, _crc = struct.unpack_from(">4sQII", data, pos)
                frames.append((pos, bytes(data[pos + 20 : pos + 20 + length])))
                pos += 20 + length
            # The middle exchange event (a checkpoint's loss would leave no gap to show).
            events = [(p, body) for p, body in frames if b'"request_id"' in body]
            victim_pos, victim = events[len(events) // 2]
            damaged = json.loads(victim)
            data[victim_pos + 20 + 5] ^= 0x40
            segment.write_bytes(data)
            broker.start()
            gw.start()
            async with indexer_running(database_url, broker, topic, 1, "corrupt-indexer"):
                ids = {a.request_id for a in answers}

                async def indexed() -> bool:
                    stored = await records(database_url, instance)
                    have = {r for c in stored.values() for r in c}
                    return len(ids - have) <= 1

                await until(indexed, 60, "every undamaged exchange to be indexed")
                stored = await records(database_url, instance)
                engine = create_engine(database_url)
                try:
                    report = await verify_store(session_factory(engine), instance=instance)
                    async with session_factory(engine)() as s:
                        findings = (await s.scalars(select(AuditFinding))).all()
                finally:
                    await engine.dispose()
        finally:
            gw.terminate()

    assert {a.status for a in answers} == {200}

    # The damaged record is one event: only its exchange lacks it.
    def lacks(a: Answer) -> bool:
        if a.request_id.startswith("closed"):
            return (stored["intent"][a.request_id], stored["outcome"][a.request_id]) != (1, 1)
        return stored[""][a.request_id] != 1

    lacking = [a.request_id for a in answers if lacks(a)]
    assert lacking == [damaged["request_id"]], lacking
    kinds = Counter(f.kind for f in findings)
    assert kinds["spool_corrupt"] == 1, kinds
    assert list((tmp_path / "spool" / instance / "quarantine").iterdir())
    assert not report.ok  # the chain shows the gap where the record was
    assert [f.kind for f in report.findings] == ["missing"], report.as_dict()
    assert len(logged(gw.log, "audit spool corrupted")) == 1
    print(
        f"{len(answers)} answered, 1 record damaged ({damaged.get('phase') or 'event'} of "
        f"{damaged['request_id']}); {len(lacking)} exchange lacks a record"
    )
