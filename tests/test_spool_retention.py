"""The spool keeps what the broker acknowledged until the store has it (issue 21, point 2):
`release`, `rewind`, the bound, and `StoreConfirmation` deciding when to send again.

The broker and the store are stand-ins here; tests/test_audit_reship.py does it with the
real broker, indexer and store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.audit.confirm import StoreConfirmation
from gateway.audit.event import EVENT_KIND
from gateway.audit.spool import HEADER_SIZE, Spool, SpoolFull
from tests.test_spool import open_spool, read_all, segments

INSTANCE = "gw-keep"


def event(seq: int, size: int = 60) -> bytes:
    """An audit event as spooled, of the same size whatever its sequence number."""
    pad = "x" * (size - len(str(seq)))
    return orjson.dumps({"kind": EVENT_KIND, "instance": INSTANCE, "seq": seq, "pad": pad})


async def add(spool: Spool, seqs: range, size: int = 60) -> None:
    await spool.append([event(n, size) for n in seqs])


async def test_acked_records_stay_until_released(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    frame = HEADER_SIZE + len(event(1))
    spool = await open_spool(directory, segment_bytes=10 * frame, keep_until_indexed=True)
    await add(spool, range(1, 36))
    await spool.ack(35)  # the broker has all of it ...
    assert len(segments(directory)) == 4  # ... and nothing is deleted
    assert (spool.acked, spool.indexed, spool.unindexed_records) == (35, 0, 35)
    assert spool.depth_records == 0  # nothing waits for the broker

    await spool.release(25)  # the store has up to 25: two segments may go
    assert len(segments(directory)) == 2
    assert spool.unindexed_records == 10
    await spool.close()

    # Both positions survive a restart, and so do the records between them.
    spool = await open_spool(directory, segment_bytes=10 * frame, keep_until_indexed=True)
    assert (spool.acked, spool.indexed) == (35, 25)
    assert [o for o, _ in read_all(spool, 25)] == list(range(26, 36))
    await spool.close()


async def test_a_restart_before_anything_was_released_keeps_everything(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    frame = HEADER_SIZE + len(event(1))
    spool = await open_spool(directory, segment_bytes=10 * frame, keep_until_indexed=True)
    await add(spool, range(1, 31))
    await spool.ack(30)
    await spool.close()
    spool = await open_spool(directory, segment_bytes=10 * frame, keep_until_indexed=True)
    assert (spool.acked, spool.indexed) == (30, 0)
    assert [o for o, _ in read_all(spool, 0)] == list(range(1, 31))
    await spool.close()


async def test_rewind_sends_again_from_the_store_position(tmp_path: Path) -> None:
    frame = HEADER_SIZE + len(event(1))
    spool = await open_spool(tmp_path / "s", segment_bytes=10 * frame, keep_until_indexed=True)
    await add(spool, range(1, 31))
    await spool.ack(30)
    await spool.release(12)
    # Asked to go back further than the store's position: only to the store's position.
    assert await spool.rewind(5) == 12
    assert (spool.acked, spool.depth_records) == (12, 18)
    assert [o for o, _ in read_all(spool, spool.acked)] == list(range(13, 31))
    assert await spool.rewind(20) == 12  # never forward
    await spool.close()


async def test_kept_records_give_way_to_new_ones_at_the_bound(tmp_path: Path) -> None:
    frame = HEADER_SIZE + len(event(1))
    spool = await open_spool(
        tmp_path / "s", segment_bytes=10 * frame, max_bytes=40 * frame, keep_until_indexed=True
    )
    await add(spool, range(1, 41))
    await spool.ack(40)  # all acknowledged, none indexed: the files are at the bound
    await add(spool, range(41, 46))  # room is made from the oldest acknowledged segment
    assert spool.released_unindexed == 10
    assert spool.indexed == 10
    assert [o for o, _ in read_all(spool, 10)][:1] == [11]
    # What the broker has not acknowledged is never given up: that is still refused.
    await add(spool, range(46, 76))
    with pytest.raises(SpoolFull):
        await add(spool, range(76, 86))
    await spool.close()


class FakeStore:
    """What the store holds of the instance: its event sequence numbers."""

    def __init__(self) -> None:
        self.events: set[int] = set()

    async def indexed(self, instance: str, lo: int, hi: int) -> tuple[set[int], set[int], int]:
        assert instance == INSTANCE
        held = {n for n in self.events if lo <= n <= hi}
        return held, set(), max(self.events, default=0)


class FakeShipper:
    def __init__(self) -> None:
        self.rewinds: list[int] = []

    def request_rewind(self, offset: int) -> None:
        self.rewinds.append(offset)


async def _confirmation(
    tmp_path: Path, **kwargs: Any
) -> tuple[Spool, FakeStore, FakeShipper, StoreConfirmation]:
    spool = await open_spool(tmp_path / "s", segment_bytes=4096, keep_until_indexed=True)
    store, shipper = FakeStore(), FakeShipper()
    confirm = StoreConfirmation(spool, shipper, store, INSTANCE, **kwargs)  # type: ignore[arg-type]
    return spool, store, shipper, confirm


async def _until(predicate: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_what_the_store_holds_is_released_and_nothing_sent_again(tmp_path: Path) -> None:
    spool, store, shipper, confirm = await _confirmation(
        tmp_path, gap_seconds=0.05, stall_seconds=0.1
    )
    await add(spool, range(1, 101))
    await spool.ack(100)
    store.events = set(range(1, 61))  # the indexer has read the first 60 so far
    await confirm.check()
    assert (spool.indexed, spool.unindexed_records) == (60, 40)
    store.events = set(range(1, 101))
    await confirm.check()
    assert spool.unindexed_records == 0
    await asyncio.sleep(0.2)  # past the stall time: nothing waits, so nothing is re-sent
    await confirm.check()
    assert shipper.rewinds == []
    await spool.close()


async def test_a_gap_in_the_store_is_sent_again(tmp_path: Path) -> None:
    spool, store, shipper, confirm = await _confirmation(
        tmp_path, gap_seconds=0.05, stall_seconds=60
    )
    await add(spool, range(1, 101))
    await spool.ack(100)
    # The broker lost 41..70 after acknowledging them; the indexer went on with 71..100.
    store.events = set(range(1, 41)) | set(range(71, 101))

    async def rewound() -> bool:
        await confirm.check()
        return bool(shipper.rewinds)

    await _until(rewound)
    assert shipper.rewinds == [40]  # from the store's position, once
    assert spool.indexed == 40
    await spool.close()


async def test_a_store_that_does_not_move_is_sent_again_with_backoff(tmp_path: Path) -> None:
    now = [0.0]
    spool, store, shipper, confirm = await _confirmation(
        tmp_path, gap_seconds=1, stall_seconds=10, clock=lambda: now[0]
    )
    await add(spool, range(1, 11))
    await spool.ack(10)  # the broker took it all, then lost it while nothing more was sent
    seen = []
    for t in (0, 9, 10, 15, 19, 20, 35, 39, 40):
        now[0] = t
        await confirm.check()
        seen.append(len(shipper.rewinds))
    # After 10 s without the store moving, then 20 s more, then 40: an indexer that is
    # away is not flooded with the same events.
    assert seen == [0, 0, 1, 1, 1, 2, 2, 2, 3]
    assert set(shipper.rewinds) == {0}
    # The store moves: the next stall is noticed after 10 s again.
    store.events = {1, 2}
    now[0] = 41
    await confirm.check()
    assert spool.indexed == 2
    now[0] = 51
    await confirm.check()
    assert len(shipper.rewinds) == 4
    await spool.close()
