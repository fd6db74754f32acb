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
