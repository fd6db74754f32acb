"""`lgsp audit checkpoint | prove | verify-proof`: the audit log as a transparency log.

`checkpoint` and `prove` read the store on the host (and record the read, as the auditor
API does); `verify-proof` reads nothing but the proof file and the keys given, so an
auditor runs it on their own machine, offline.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import distinct, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit import tlog
from gateway.audit.note import NoteError, NoteVerifier
from gateway.audit.proofs import ProofFailed, verify_bundle
from gateway.ops.cli.common import cli_actor, settings_from, with_session
from gateway.store.models import AuditRead, AuditTreeHead

__all__ = ["add_tree_commands"]


class _Refused(Exception):
    """What the command cannot do, said to the user (exit 2)."""


async def _instance(s: AsyncSession, given: str | None) -> str:
    if given:
        return given
    names = list((await s.scalars(select(distinct(AuditTreeHead.instance)))).all())
    if len(names) != 1:
        raise _Refused(
            "give --instance: "
            + (f"the store has the logs of {', '.join(sorted(names))}" if names else "no log yet")
        )
    return names[0]


def cmd_checkpoint(args: argparse.Namespace) -> int:
    """Print an instance's latest (or --size) checkpoint, cosignatures included."""

    async def work(s: AsyncSession) -> str:
        head = await tlog.head_at(s, await _instance(s, args.instance), args.size)
        return await tlog.signed_note(s, head)

    return _run(args, work, lambda note: sys.stdout.write(note))


def cmd_prove(args: argparse.Namespace) -> int:
    """Write an inclusion proof (--event-id, --request-id) or a consistency proof (--old)."""

    async def work(s: AsyncSession) -> dict[str, Any]:
        if args.old is not None:
            instance = await _instance(s, args.instance)
            out = await tlog.consistency_bundle(s, instance, args.old, args.new)
            asked: dict[str, Any] = {"instance": instance, "old": args.old, "new": args.new}
            n = 0
        else:
            proofs = await tlog.inclusion_bundles(
                s,
                event_id=args.event_id,
                request_id=args.request_id,
                size=args.size,
                with_record=not args.no_record,
            )
            out = {"proofs": proofs}
            asked = {"event_id": args.event_id, "request_id": args.request_id, "size": args.size}
            n = len(proofs)
        s.add(
            AuditRead(
                actor=cli_actor(),
                action="tree-proof",
                query={k: v for k, v in asked.items() if v is not None},
                unmasked=not args.no_record and args.old is None,
                records=n,
            )
        )
        return out

    def write(doc: dict[str, Any]) -> None:
        data = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
        if args.output:
            Path(args.output).write_bytes(data)
            print(f"proof written to {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(data.decode())

    return _run(args, work, write)


def _run(args: argparse.Namespace, work: Any, show: Any) -> int:
    try:
        result = asyncio.run(with_session(settings_from(args), work))
    except (tlog.ProofUnavailable, _Refused) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    show(result)
    return 0


def _keys(values: list[str]) -> list[NoteVerifier]:
    """Verifier keys, each given as is or as @file (one a line, # comments)."""
    out: list[NoteVerifier] = []
    for value in values:
        lines = [value]
        if value.startswith("@"):
            lines = Path(value[1:]).read_text(encoding="utf-8").splitlines()
        out += [NoteVerifier.parse(x) for x in lines if x.strip() and not x.startswith("#")]
    return out


def cmd_verify_proof(args: argparse.Namespace) -> int:
    """Check a proof file offline; exit 1 if it does not hold."""
    try:
        logs, witnesses = _keys(args.log_key), _keys(args.witness_key)
        doc = orjson.loads(Path(args.proof).read_bytes())
    except (OSError, NoteError, orjson.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bundles = doc["proofs"] if isinstance(doc, dict) and "proofs" in doc else [doc]
    ok = True
    for bundle in bundles:
        try:
            done = verify_bundle(bundle, logs, witnesses, min_cosignatures=args.min_cosignatures)
        except ProofFailed as e:
            print(f"FAILED: {e}")
            ok = False
            continue
        print(f"verified: {done.statement}")
    return 0 if ok else 1


def cmd_copy(args: argparse.Namespace) -> int:
    """Write every chained event of an instance, seq 1 on, as JSON Lines: the copy of the
    log an auditor keeps, against which `verify-tree` later names a rewritten leaf."""
    from gateway.store.models import AuditRecord

    async def work(s: AsyncSession) -> int:
        instance = await _records_instance(s, args.instance)
        stmt = select(AuditRecord).where(
            AuditRecord.instance == instance, AuditRecord.seq.is_not(None)
        )
        if args.size:
            stmt = stmt.where(AuditRecord.seq <= args.size)
        n = 0
        with open(args.output, "wb") as out:  # noqa: ASYNC230 (a local file, written in order)
            rows = await s.stream_scalars(
                stmt.order_by(AuditRecord.seq, AuditRecord.id).execution_options(yield_per=2000)
            )
            async for row in rows:
                out.write(orjson.dumps(tlog.record_fields(row)) + b"\n")
                n += 1
        s.add(
            AuditRead(
                actor=cli_actor(),
                action="copy",
                query={"instance": instance, "size": args.size},
                unmasked=True,
                records=n,
            )
        )
        return n

    return _run(args, work, lambda n: print(f"{n} events written to {args.output}"))


async def _records_instance(s: AsyncSession, given: str | None) -> str:
    from gateway.store.models import AuditRecord

    if given:
        return given
    stmt = select(distinct(AuditRecord.instance)).where(AuditRecord.seq.is_not(None))
    names = list((await s.scalars(stmt)).all())
    if len(names) != 1:
        raise _Refused("give --instance: the store holds " + (", ".join(sorted(names)) or "none"))
    return names[0]


def cmd_verify_tree(args: argparse.Namespace) -> int:
    """Check the store against a checkpoint you hold; exit 1 if it parts from it."""
    from gateway.audit.divergence import verify_against_checkpoint
    from gateway.audit.note import open_checkpoint

    try:
        logs, witnesses = _keys(args.log_key), _keys(args.witness_key)
        note = Path(args.checkpoint).read_text(encoding="utf-8")
        cp = open_checkpoint(note, logs, witnesses, min_cosignatures=args.min_cosignatures)
        kept = None
        if args.records:
            lines = Path(args.records).read_bytes().splitlines()
            kept = [orjson.loads(line) for line in lines if line.strip()]
    except (OSError, NoteError, orjson.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    async def work(s: AsyncSession) -> Any:
        return await verify_against_checkpoint(
            s, await _records_instance(s, args.instance), cp, kept
        )

    try:
        report = asyncio.run(with_session(settings_from(args), work))
    except _Refused as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(("verified: " if report.matches else "NOT THE LOG SIGNED: ") + report.detail)
    return 0 if report.matches else 1


def add_tree_commands(asub: Any) -> None:
    cp = asub.add_parser("checkpoint", help="print an instance's signed tree head")
    cp.add_argument("--instance")
    cp.add_argument("--size", type=int, help="that size's checkpoint (default: the latest)")
    cp.set_defaults(func=cmd_checkpoint)

    pr = asub.add_parser("prove", help="write an inclusion or consistency proof")
    what = pr.add_mutually_exclusive_group(required=True)
    what.add_argument("--event-id")
    what.add_argument("--request-id", help="each event of the exchange (intent, outcome)")
    what.add_argument("--old", type=int, help="consistency from the checkpoint of this size")
    pr.add_argument("--new", type=int, help="... to this size (default: the latest)")
    pr.add_argument("--size", type=int, help="inclusion against this size (default: latest)")
    pr.add_argument("--instance", help="whose log (consistency proofs)")
    pr.add_argument("--no-record", action="store_true", help="the event hash, not the record")
    pr.add_argument("-o", "--output", help="file to write (default: stdout)")
    pr.set_defaults(func=cmd_prove)

    vp = asub.add_parser("verify-proof", help="check a proof offline with the public keys")
    vp.add_argument("proof", help="the file `prove` or the auditor API wrote")
    vp.add_argument(
        "--log-key", action="append", required=True, help="the log's verifier key, or @file"
    )
    vp.add_argument(
        "--witness-key", action="append", default=[], help="a witness's key (0x04), or @file"
    )
    vp.add_argument("--min-cosignatures", type=int, default=0, help="required of the witnesses")
    vp.set_defaults(func=cmd_verify_proof)

    cy = asub.add_parser("copy", help="write every chained event of an instance (a log copy)")
    cy.add_argument("output", help="the JSON Lines file to write")
    cy.add_argument("--instance")
    cy.add_argument("--size", type=int, help="up to this seq (a checkpoint's size)")
    cy.set_defaults(func=cmd_copy)

    vt = asub.add_parser("verify-tree", help="check the store against a checkpoint you hold")
    vt.add_argument("--checkpoint", required=True, help="the checkpoint note you kept")
    vt.add_argument("--log-key", action="append", required=True, help="or @file")
    vt.add_argument("--witness-key", action="append", default=[], help="or @file")
    vt.add_argument("--min-cosignatures", type=int, default=0)
    vt.add_argument("--instance")
    vt.add_argument("--records", help="your copy of the log (`lgsp audit copy`): names the leaf")
    vt.set_defaults(func=cmd_verify_tree)
