"""`lgsp audit ...` and `lgsp audit-indexer`: read, verify, export and purge the audit log
on the host, with the store's credentials."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func, select

from gateway.core.logging import configure_logging
from gateway.ops.cli.audit_tree import add_tree_commands
from gateway.ops.cli.common import (
    cell,
    cli_actor,
    parse_when,
    print_rows,
    settings_from,
    with_session,
)
from gateway.store.db import create_engine, session_factory
from gateway.store.migrate import upgrade
from gateway.store.models import AdminEvent, AuditRecord

AUDIT_COLUMNS = (
    "started_at",
    "request_id",
    "client_code",
    "provider_code",
    "service_code",
    "method",
    "status",
    "error_type",
    "officer_id",
    "procedure_code",
    "duration_ms",
)


CHANGE_COLUMNS = ("at", "actor", "action", "target", "comment")


def cmd_audit(args: argparse.Namespace) -> int:
    """`list`: exchanges; `changes`: configuration and credential changes. Newest last."""
    settings = settings_from(args)
    model: type[AuditRecord] | type[AdminEvent]
    model, columns = (
        (AdminEvent, CHANGE_COLUMNS) if args.action == "changes" else (AuditRecord, AUDIT_COLUMNS)
    )

    async def work(session: Any) -> list[Any]:
        query = select(model).order_by(model.id.desc()).limit(args.limit)
        if model is AuditRecord:
            if args.request_id:
                query = query.where(AuditRecord.request_id == args.request_id)
            if args.client:
                query = query.where(AuditRecord.client_code == args.client)
        return list(reversed((await session.scalars(query)).all()))

    rows = asyncio.run(with_session(settings, work))
    print_rows(rows, model, columns, as_json=args.json, header=True)
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Check hashes, links, gaps and signed checkpoints; exit 1 on any finding."""
    from gateway.audit.chain import load_public_key
    from gateway.audit.verify import verify_store

    settings = settings_from(args)
    keys = None
    if args.keys:
        doc = orjson.loads(Path(args.keys).read_bytes())
        keys = {k["key_id"]: load_public_key(k["public_key"]) for k in doc["keys"]}

    async def run() -> Any:
        engine = create_engine(settings.database_url)
        try:
            return await verify_store(
                session_factory(engine),
                since=parse_when(args.since),
                until=parse_when(args.until),
                instance=args.instance,
                keys=keys,
            )
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    if args.json:
        print(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
        return 0 if report.ok else 1
    for r in report.instances:
        verdict = "ok" if not r.findings else f"{len(r.findings)} finding(s)"
        print(
            f"{r.instance}: seq {r.first_seq}..{r.last_seq}, {r.events} events, "
            f"{r.checkpoints} signed checkpoints: {verdict}"
        )
        for f in r.findings:
            print(f"  {f.kind}: {f.detail}")
    if not report.instances:
        print("no chained audit records in that range")
    print("verified: the audit trail is intact" if report.ok else "NOT INTACT: see findings above")
    return 0 if report.ok else 1


def cmd_audit_keys(args: argparse.Namespace) -> int:
    """Export the checkpoint keys, for an auditor to verify later against this file; each
    with its transparency log's verifier key (`log_key`, for `verify-proof --log-key`)."""
    from gateway.audit.chain import load_public_key
    from gateway.audit.note import NoteVerifier
    from gateway.audit.tlog import log_origin
    from gateway.store.models import AuditSigningKey, AuditTreeHead

    settings = settings_from(args)

    async def work(session: Any) -> list[dict[str, Any]]:
        rows = (await session.scalars(select(AuditSigningKey))).all()
        out = []
        for k in rows:
            origin = await session.scalar(
                select(AuditTreeHead.origin).where(AuditTreeHead.key_id == k.key_id).limit(1)
            )
            origin = origin or settings.audit_log_origin or log_origin(settings.issuer, k.instance)
            out.append(
                {
                    "key_id": k.key_id,
                    "instance": k.instance,
                    "public_key": k.public_key,
                    "log_key": NoteVerifier(origin, load_public_key(k.public_key)).vkey(),
                    "registered_at": k.registered_at.isoformat(),
                }
            )
        return out

    keys = asyncio.run(with_session(settings, work))
    print(orjson.dumps({"keys": keys}, option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    """Stream matching exchanges to a CSV or JSON Lines file, with a progress bar."""
    from tqdm import tqdm

    from gateway.audit import query
    from gateway.store.models import AuditRead

    settings = settings_from(args)
    f = query.AuditFilter(
        since=parse_when(args.since),
        until=parse_when(args.until),
        client=args.client,
        agency=args.agency,
        service=args.service,
        procedure=args.procedure,
        case=args.case,
    )
    fmt = args.format or ("csv" if args.output.endswith(".csv") else "jsonl")

    async def run() -> int:
        engine = create_engine(settings.database_url)
        sessions = session_factory(engine)
        n = 0
        try:
            async with sessions() as s:
                total = await query.count(s, f)
                with (
                    open(args.output, "w", encoding="utf-8", newline="") as out,  # noqa: ASYNC230
                    tqdm(total=total, unit="rec", file=sys.stderr, disable=args.quiet) as bar,
                ):
                    writer = query.ExportWriter(out, fmt)
                    async for rows in query.iterate(s, f):
                        docs = [query.record_dict(r) for r in rows]
                        if not args.unmask:
                            docs = [query.mask_record(d) for d in docs]
                        writer.write(docs)
                        n += len(docs)
                        bar.update(len(docs))
            async with sessions() as s, s.begin():
                s.add(
                    AuditRead(
                        actor=cli_actor(),
                        action="export",
                        query=f.as_dict(),
                        unmasked=args.unmask,
                        records=n,
                    )
                )
        finally:
            await engine.dispose()
        return n

    n = asyncio.run(run())
    print(f"{n} records written to {args.output} ({fmt})", file=sys.stderr)
    return 0


def cmd_audit_tail(args: argparse.Namespace) -> int:
    """Print exchanges as the store receives them, until interrupted."""
    settings = settings_from(args)

    async def run() -> None:
        engine = create_engine(settings.database_url)
        sessions = session_factory(engine)
        try:
            async with sessions() as s:
                newest = await s.scalar(select(func.max(AuditRecord.id))) or 0
                start = max(0, newest - args.lines)
            header = True
            while True:
                async with sessions() as s:
                    rows = list(
                        (
                            await s.scalars(
                                select(AuditRecord)
                                .where(AuditRecord.id > start)
                                .order_by(AuditRecord.id)
                                .limit(1000)
                            )
                        ).all()
                    )
                if rows:
                    print_rows(rows, AuditRecord, AUDIT_COLUMNS, as_json=args.json, header=header)
                    header = False
                    start = rows[-1].id
                else:
                    await asyncio.sleep(args.interval)
        finally:
            await engine.dispose()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


def cmd_audit_purge(args: argparse.Namespace) -> int:
    from gateway.audit.retention import purge

    settings = settings_from(args)
    cutoff = parse_when(args.before)
    if cutoff is None:
        if not settings.audit_retention_days:
            print("give --before, or set LGSP_AUDIT_RETENTION_DAYS", file=sys.stderr)
            return 2
        cutoff = datetime.now(UTC) - timedelta(days=settings.audit_retention_days)

    async def run() -> Any:
        engine = create_engine(settings.database_url)
        try:
            return await purge(session_factory(engine), cutoff=cutoff, actor=cli_actor())
        finally:
            await engine.dispose()

    record = asyncio.run(run())
    if record is None:
        print(f"nothing started before {cutoff.isoformat()}")
    else:
        print(
            f"purged {record.count} records ({cell(record.first_started_at)} .. "
            f"{cell(record.last_started_at)}); chain heads kept: "
            + orjson.dumps(record.heads).decode()
        )
    return 0


def cmd_audit_index_subjects(args: argparse.Namespace) -> int:
    from gateway.audit.store import index_stored
    from gateway.audit.subjects import load_subject_key

    settings = settings_from(args)
    key = load_subject_key(settings.keys_dir)

    async def run() -> tuple[int, int]:
        engine = create_engine(settings.database_url)
        try:
            return await index_stored(session_factory(engine), key)
        finally:
            await engine.dispose()

    read, added = asyncio.run(run())
    print(f"read {read} records; {added} index rows added (from their paths)")
    return 0


def cmd_audit_indexer(args: argparse.Namespace) -> int:
    """Consume the audit topic into the store until SIGINT/SIGTERM."""
    from gateway.audit.indexer import Indexer
    from gateway.audit.log import kafka_settings
    from gateway.audit.retention import retention_loop
    from gateway.audit.store import AuditStore
    from gateway.audit.subjects import load_subject_key

    settings = settings_from(args)
    configure_logging(settings.log_level)
    if not settings.audit_kafka_bootstrap:
        print("set LGSP_AUDIT_KAFKA_BOOTSTRAP to the broker(s) to index from", file=sys.stderr)
        return 2
    if not args.no_migrate:
        upgrade(settings.database_url)

    async def run() -> None:
        engine = create_engine(settings.database_url)
        sessions = session_factory(engine)
        indexer = Indexer(
            AuditStore(sessions, source="indexer", subject_key=load_subject_key(settings.keys_dir)),
            kafka_settings(settings),
            group=settings.audit_indexer_group,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, indexer.stop)
        tasks = []
        if settings.audit_retention_days:
            tasks.append(
                asyncio.create_task(
                    retention_loop(
                        sessions, days=settings.audit_retention_days, actor="audit-indexer"
                    )
                )
            )
        try:
            await indexer.run()
        finally:
            for t in tasks:
                t.cancel()
            await engine.dispose()

    asyncio.run(run())
    return 0


def add_commands(sub: Any) -> None:
    audit = sub.add_parser("audit", help="read, verify, export and purge the audit log")
    asub = audit.add_subparsers(dest="action", required=True)
    for name, text in (("list", "exchanges, newest last"), ("changes", "admin changes")):
        lst = asub.add_parser(name, help=text)
        lst.add_argument("--limit", type=int, default=20)
        lst.add_argument("--request-id")
        lst.add_argument("--client")
        lst.add_argument("--json", action="store_true", help="one JSON object per line")
        lst.set_defaults(func=cmd_audit)
    ver = asub.add_parser("verify", help="check the hash chains and signed checkpoints")
    ver.add_argument("--since", help="ISO 8601; without a zone, Vietnam time")
    ver.add_argument("--until")
    ver.add_argument("--instance")
    ver.add_argument("--keys", help="trust only these keys (a file from `lgsp audit keys`)")
    ver.add_argument("--json", action="store_true", help="the full report")
    ver.set_defaults(func=cmd_audit_verify)
    asub.add_parser("keys", help="export the checkpoint public keys").set_defaults(
        func=cmd_audit_keys
    )
    exp = asub.add_parser("export", help="write exchanges to CSV or JSON Lines")
    exp.add_argument("output", help="file to write (.csv or .jsonl)")
    exp.add_argument("--format", choices=["csv", "jsonl"])
    exp.add_argument("--since")
    exp.add_argument("--until")
    exp.add_argument("--client")
    exp.add_argument("--agency")
    exp.add_argument("--service")
    exp.add_argument("--procedure")
    exp.add_argument("--case")
    exp.add_argument("--unmask", action="store_true", help="personal identifiers in clear")
    exp.add_argument("--quiet", action="store_true", help="no progress bar")
    exp.set_defaults(func=cmd_audit_export)
    tail = asub.add_parser("tail", help="follow exchanges as they are stored")
    tail.add_argument("-n", "--lines", type=int, default=10)
    tail.add_argument("--interval", type=float, default=1.0)
    tail.add_argument("--json", action="store_true")
    tail.set_defaults(func=cmd_audit_tail)
    prg = asub.add_parser("purge", help="remove records older than the retention period")
    prg.add_argument("--before", help="cutoff (default: now - LGSP_AUDIT_RETENTION_DAYS)")
    prg.set_defaults(func=cmd_audit_purge)
    asub.add_parser(
        "index-subjects",
        help="index the ids in the paths of records stored before the whose-data index",
    ).set_defaults(func=cmd_audit_index_subjects)

    add_tree_commands(asub)

    idx = sub.add_parser("audit-indexer", help="consume the audit topic into the store")
    idx.add_argument("--no-migrate", action="store_true")
    idx.set_defaults(func=cmd_audit_indexer)
