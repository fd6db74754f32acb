"""What the broker loses, the gateway still has (issue 21, point 2).

The Tansu test broker keeps everything in memory: replaced mid-run, it has lost every
record it acknowledged, including those the indexer had not read yet. The gateway keeps
its spooled events until the *store* holds them, notices that the broker lost some, and
sends them again; counted per request id, nothing answered is missing from the store,
nothing is stored twice, and the chain verifies whole.

Two ways to lose: with the indexer paused (hundreds of acknowledged events waiting only on
the broker when it goes), and with the indexer running (the few it had not read yet).
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from gateway.audit.indexer import Indexer
from tests.fault_rig import indexer_running
from tests.test_audit_kafka import (
    TOPIC,
    Rig,
    _assert_exactly_once_and_intact,
    _count_at_least,
    _until,
    broker,
    rig,
)

__all__ = ["broker", "rig"]  # the fixtures, shared with tests/test_audit_kafka.py


def _audit(rig: Rig) -> dict[str, object]:
    return dict(httpx.get(rig.gateway.url + "/healthz").json()["audit"])


def _indexer(rig: Rig, group: str) -> contextlib.AbstractAsyncContextManager[Indexer]:
    return indexer_running(rig.database_url, rig.broker, TOPIC, 2, group)


async def _stop(indexer: Indexer) -> None:
    indexer.stop()
    await asyncio.sleep(1.0)  # its last batch (getmany waits at most 0.5 s) is committed


@pytest.mark.parametrize("indexer_paused", [True, False], ids=["indexer-paused", "indexer-running"])
async def test_a_replaced_broker_loses_no_event(rig: Rig, indexer_paused: bool) -> None:
    burst = asyncio.create_task(rig.burst(800, concurrency=4))
    await _until(lambda: _count_at_least(rig, 150), 30, "the first exchanges")
    if indexer_paused:
        await _stop(rig.indexer)

        async def waiting_on_the_broker_only() -> bool:
            # Acknowledged by the broker, not in the store: what a replaced broker loses.
            return int(_audit(rig)["spool_unindexed_records"]) >= 100  # type: ignore[call-overload]

        await _until(waiting_on_the_broker_only, 30, "events acknowledged but not indexed")
    lost = _audit(rig)["spool_unindexed_records"]
    rig.broker.stop()
    rig.broker.start()  # a fresh broker on the same address: it lost everything
    # The paused indexer comes back (as a new process would, under its group).
    after = _indexer(rig, "test-indexer-after") if indexer_paused else contextlib.nullcontext()
    async with after:
        await burst
        await _assert_exactly_once_and_intact(rig)
        assert len(rig.answered) == 800

        async def released() -> bool:
            # Once the store has everything, the spool lets go of it.
            a = _audit(rig)
            return a["spool_unindexed_records"] == 0 and a["spool_records"] == 0

        await _until(released, 30, "the spool to release what the store holds")
    reshipped = _audit(rig)["reshipped"]
    print(f"acknowledged, not indexed when the broker went: {lost}; re-shipped: {reshipped}")
    if indexer_paused:
        assert int(lost) >= 100  # type: ignore[call-overload]
        assert int(reshipped) >= 1  # type: ignore[call-overload]


async def test_a_broker_replaced_while_the_gateway_was_stopped_loses_no_event(rig: Rig) -> None:
    """The restarted gateway has no memory of the old broker's offsets, so nothing goes
    backwards; it sees instead that the store holds its newer events but not the older
    ones, and sends those again."""
    await rig.burst(300, concurrency=4)
    await _stop(rig.indexer)
    await rig.burst(200, concurrency=4)  # acknowledged by the broker, never indexed

    async def all_acknowledged() -> bool:
        a = _audit(rig)
        return a["spool_records"] == 0 and int(a["spool_unindexed_records"]) >= 200  # type: ignore[call-overload]

    await _until(all_acknowledged, 30, "the broker to acknowledge everything")
    rig.gateway.terminate()
    rig.broker.stop()
    rig.broker.start()  # while the gateway is down: it lost everything
    rig.gateway.start()  # the same spool: what the store lacks is still there
    async with _indexer(rig, "test-indexer-after"):
        await rig.burst(200, concurrency=4)
        await _assert_exactly_once_and_intact(rig)
        assert len(rig.answered) == 700

        async def released() -> bool:
            a = _audit(rig)
            return a["spool_unindexed_records"] == 0 and a["spool_records"] == 0

        await _until(released, 30, "the spool to release what the store holds")
    assert int(_audit(rig)["reshipped"]) >= 1  # type: ignore[call-overload]
