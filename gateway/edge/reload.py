"""Hot reload: every replica picks up a configuration change within a second.

Every admin transaction bumps the configuration version (gateway/store/changes.py). On
PostgreSQL it also sends `NOTIFY lgsp_config`, delivered at commit, so each gateway hears
of the change at once; a slow poll stays as the safety net for a dropped connection. On
SQLite (one host) the version is polled every `config_poll_seconds`: a one-row read.

The new tables are built beside the old ones and swapped in with one assignment, so a
request finishes under the table it started with and none fails during a reload (Kong's
and APISIX's latency spikes came from rebuilding the router on the request path).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from typing import Any

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from gateway.config.runtime import load_runtime_config
from gateway.core.logging import log
from gateway.edge.state import GatewayState
from gateway.store import changes as admin
from gateway.store.models import PolicyVersion

CHANNEL = admin.CONFIG_CHANNEL
# With LISTEN, polling only covers a notification lost with a broken connection.
LISTEN_SAFETY_POLL_SECONDS = 5.0


async def reload_config(state: GatewayState) -> bool:
    """Rebuild the tables if the configuration changed since the last build, and pick up
    signing keys rotated by another process."""
    async with state.reload_lock:
        state.keys.refresh()
        async with state.sessions() as session:
            version = await admin.config_version(session)
            if version == state.config_version:
                return False
            # Logged beside the configuration version, which every admin change bumps
            # (a credential too): the policy version `lgsp policy history` lists.
            policy_version = await session.scalar(select(func.max(PolicyVersion.id)))
        started = time.perf_counter()
        config = await load_runtime_config(state.sessions)
        state.pipeline.swap_config(config)
        state.config_version = version
        state.issuers.wake()  # a trusted issuer added or changed: fetch its keys now
        _freeze_tables(state)
    log.info(
        "configuration loaded",
        config_version=version,
        policy_version=policy_version,
        services=len(config.services),
        clients=len(config.clients),
        build_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return True


# Every this many reloads, one full collection (the ~100 ms pass freezing avoids) clears
# cyclic garbage that was frozen while alive: in-flight requests' objects at swap time.
FULL_COLLECT_EVERY = 25


def _freeze_tables(state: GatewayState) -> None:
    """A province's tables are ~10^5 long-lived objects. Left to the cyclic collector,
    each full pass walks all of them and stalls the loop ~100 ms at some random request;
    frozen, they are skipped. They hold no reference cycles, so old tables are still
    freed by reference counting when the next swap drops them."""
    state.reloads += 1
    if state.reloads % FULL_COLLECT_EVERY == 0:
        gc.unfreeze()
        gc.collect()
    gc.freeze()


async def _reload_logged(state: GatewayState) -> None:
    try:
        await reload_config(state)
    except Exception as e:  # keep serving on the tables we have
        log.error("configuration reload failed", error=str(e))


async def watch_config(state: GatewayState) -> None:
    """Run for the gateway's life: reload on notification (PostgreSQL) or by polling."""
    url = make_url(state.settings.database_url)
    if url.get_backend_name() != "postgresql":
        while True:
            await asyncio.sleep(state.settings.config_poll_seconds)
            await _reload_logged(state)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    while True:
        try:
            await _listen(state, dsn)
        except (OSError, asyncpg.PostgresError) as e:
            log.error("configuration notifications lost; polling until reconnected", error=str(e))
            await asyncio.sleep(state.settings.config_poll_seconds)
            await _reload_logged(state)


async def _listen(state: GatewayState, dsn: str) -> None:
    changed = asyncio.Event()

    def notified(*_args: Any) -> None:
        changed.set()

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.add_listener(CHANNEL, notified)
        conn.add_termination_listener(notified)
        # Anything committed before LISTEN took effect would be missed: check once now.
        await _reload_logged(state)
        while not conn.is_closed():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), LISTEN_SAFETY_POLL_SECONDS)
            changed.clear()
            await _reload_logged(state)
        raise OSError("notification connection closed")
    finally:
        with contextlib.suppress(Exception):
            await conn.close(timeout=2)
