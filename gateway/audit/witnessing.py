"""The gateway's side of c2sp.org/tlog-witness: after each tree head, send it to every
configured witness with a consistency proof from the last size that witness cosigned,
and keep the cosignatures it returns (`AuditCosignature`), which the auditor API and
`lgsp audit checkpoint` then serve with the checkpoint.

A witness that answers 409 gives the size it knows; the proof is made again from there,
once. A witness that refuses (a proof that does not verify: the log was rewritten) or
cannot be reached is reported in `status()`, which the health check and the metrics
read: the alarm when witnesses stop cosigning.

Example:
    >>> parse_witness("https://w.example/ w.example/w1+01020304+BAAA").url
    'https://w.example/'
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.note import NoteError, NoteVerifier, cosignatures
from gateway.audit.tlog import consistency_hashes, latest_head
from gateway.audit.witness import SIZE_MEDIA_TYPE, add_checkpoint_body
from gateway.core.logging import log
from gateway.store.models import AuditCosignature, AuditTreeHead

__all__ = ["WitnessConfig", "Witnessing", "parse_witness"]


@dataclass(frozen=True, slots=True)
class WitnessConfig:
    url: str  # the submission prefix; add-checkpoint is under it
    vkey: str  # its cosignature key (type 0x04)

    @property
    def name(self) -> str:
        return self.vkey.split("+", 1)[0]


def parse_witness(text: str) -> WitnessConfig:
    """`<submission prefix URL> <verifier key>`, as LGSP_AUDIT_WITNESSES lists them."""
    url, _, vkey = text.strip().partition(" ")
    if not url.startswith(("http://", "https://")) or not vkey.strip():
        raise ValueError(f"a witness is '<https URL> <verifier key>', not {text!r}")
    return WitnessConfig(url, vkey.strip())


@dataclass
class WitnessState:
    cosigned_size: int = 0
    last_error: str | None = None
    last_ok: float | None = None


@dataclass
class Witnessing:
    sessions: async_sessionmaker[AsyncSession]
    instance: str
    witnesses: list[WitnessConfig]
    timeout: float = 10.0
    states: dict[str, WitnessState] = field(default_factory=dict)
    head_size: int = 0

    async def sync(self) -> None:
        """Bring every witness up to the latest head (one round; errors are recorded)."""
        async with self.sessions() as s:
            head = await latest_head(s, self.instance)
        if head is None or not self.witnesses:
            return
        self.head_size = head.size
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            for w in self.witnesses:
                state = self.states.setdefault(w.name, WitnessState())
                try:
                    await self._submit(http, w, head, state)
                except (aiohttp.ClientError, TimeoutError, OSError) as e:
                    self._failed(w, state, f"unreachable: {type(e).__name__}: {e}")

    def _failed(self, w: WitnessConfig, state: WitnessState, why: str) -> None:
        state.last_error = why
        log.error("AUDIT WITNESS DID NOT COSIGN", witness=w.name, instance=self.instance, why=why)

    async def _cosigned(self, w: WitnessConfig) -> int:
        async with self.sessions() as s:
            size = await s.scalar(
                select(func.max(AuditTreeHead.size))
                .join(AuditCosignature, AuditCosignature.tree_head_id == AuditTreeHead.id)
                .where(AuditTreeHead.instance == self.instance, AuditCosignature.witness == w.name)
            )
        return int(size or 0)

    async def _submit(
        self, http: aiohttp.ClientSession, w: WitnessConfig, head: AuditTreeHead, st: WitnessState
    ) -> None:
        old = await self._cosigned(w)
        st.cosigned_size = old
        if old >= head.size:
            st.last_error = None
            return
        for _ in range(2):  # a 409 names the size the witness holds: one more try from it
            async with self.sessions() as s:
                proof = await consistency_hashes(s, self.instance, old, head.size)
            body = add_checkpoint_body(old, proof, head.note)
            url = w.url.rstrip("/") + "/add-checkpoint"
            async with http.post(url, data=body.encode()) as r:
                text = await r.text()
                if r.status == 409 and r.content_type == SIZE_MEDIA_TYPE:
                    known = text.strip()
                    if known.isdigit() and int(known) != old and int(known) <= head.size:
                        old = int(known)
                        continue
                if r.status != 200:
                    self._failed(w, st, f"refused with {r.status}: {text.strip()[:300]}")
                    return
            await self._keep(w, head, text, st)
            return
        self._failed(w, st, "the witness's size keeps changing")

    async def _keep(
        self, w: WitnessConfig, head: AuditTreeHead, text: str, st: WitnessState
    ) -> None:
        try:
            key = NoteVerifier.parse(w.vkey)
            found = [c for c in cosignatures(head.note + text, [key]) if c.witness == w.name]
        except NoteError as e:
            found, why = [], str(e)
        else:
            why = "its answer holds no valid cosignature of its key"
        if not found:
            self._failed(w, st, why)
            return
        async with self.sessions() as s, s.begin():
            s.add(
                AuditCosignature(
                    tree_head_id=head.id,
                    witness=w.name,
                    timestamp=found[0].timestamp,
                    line=found[0].line,
                )
            )
        st.cosigned_size, st.last_error, st.last_ok = head.size, None, time.time()
        log.info("audit tree head cosigned", witness=w.name, size=head.size)

    def status(self) -> dict[str, Any]:
        return {
            name: {
                "cosigned_size": st.cosigned_size,
                "behind": max(0, self.head_size - st.cosigned_size),
                "last_error": st.last_error,
            }
            for name, st in self.states.items()
        }
