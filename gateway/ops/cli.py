"""`lgsp`: run the gateway and administer it from the host it runs on."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, get_args

import orjson
from pydantic import ValidationError
from sqlalchemy import func, select

from gateway.config import changes as admin
from gateway.config import versions as policy_state
from gateway.config.policy import Role
from gateway.core.logging import configure_logging
from gateway.core.settings import Settings
from gateway.identity import credentials
from gateway.identity.keys import KeyStore
from gateway.ops import serve
from gateway.registry import store as registry
from gateway.registry.bundled import load_bundled
from gateway.registry.store import RegistryError
from gateway.store.db import create_engine, session_factory
from gateway.store.migrate import upgrade
from gateway.store.models import AdminEvent, AuditRecord, Credential

VIETNAM = timezone(timedelta(hours=7), "ICT")


def cli_actor() -> str:
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


async def _with_session(settings: Settings, work: Callable[[Any], Awaitable[Any]]) -> Any:
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("host", "port", "database_url"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return Settings(**overrides)


# -- commands ---------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logging(settings.log_level)
    if args.worker:  # started by a parent `lgsp serve --workers N`, which prepared
        return serve.run(lambda: serve.serve_worker(settings, reuse_port=True))
    workers = serve.worker_count(settings, args.workers)
    if not args.no_migrate:
        upgrade(settings.database_url)
    if workers == 1:
        return serve.run(lambda: serve.serve_worker(settings, reuse_port=False))
    serve.prepare(settings)
    return serve.Supervisor(settings, workers).run()


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    upgrade(settings.database_url)
    print(f"database at {settings.database_url} is up to date")
    return 0


def _admin_command(settings: Settings, work: Callable[[Any], Awaitable[Any]]) -> int:
    """Run one admin change in one transaction; print its result as JSON, if any."""
    try:
        out = asyncio.run(_with_session(settings, work))
    except (admin.NotFound, policy_state.PolicyRejected, ValidationError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if out is not None:
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    return 0


async def _issue(session: Any, code: str, api_key: bool, *, replace: bool) -> dict[str, Any]:
    value = await admin.issue_credential(
        session,
        client_code=code,
        kind="api_key" if api_key else "secret",
        actor=cli_actor(),
        revoke_others=replace,
    )
    credential_id = await session.scalar(
        select(Credential.id).where(Credential.secret_sha256 == credentials.digest(value))
    )
    return {
        "client_id": code,
        ("api_key" if api_key else "client_secret"): value,
        "credential_id": credential_id,
    }


def cmd_client_create(args: argparse.Namespace) -> int:
    async def work(session: Any) -> dict[str, Any]:
        await policy_state.create_client(
            session,
            code=args.code,
            agency_code=args.agency,
            name=args.name,
            actor=cli_actor(),
            roles=args.role,
        )
        return await _issue(session, args.code, args.api_key, replace=False)

    status = _admin_command(_settings(args), work)
    if status == 0:
        print("store the secret now: the gateway keeps only its digest.", file=sys.stderr)
    return status


def cmd_client_credential(args: argparse.Namespace) -> int:
    return _admin_command(
        _settings(args), lambda s: _issue(s, args.code, args.api_key, replace=args.replace)
    )


def cmd_credential_revoke(args: argparse.Namespace) -> int:
    status = _admin_command(
        _settings(args),
        lambda s: admin.revoke_credential(s, credential_id=args.id, actor=cli_actor()),
    )
    if status == 0:
        print(f"credential {args.id} revoked")
    return status


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    keys = KeyStore(settings.keys_dir, settings.key_passphrase, settings.token_algorithms[0])
    keys.load()
    pair = keys.rotate(
        retire_after_seconds=settings.token_ttl_seconds + settings.clock_skew_seconds
    )

    async def work(session: Any) -> None:
        await admin.record(session, actor=cli_actor(), action="keys.rotate", target=pair.kid)

    asyncio.run(_with_session(settings, work))
    print(f"new signing key {pair.kid}; tokens signed by older keys stay valid until they expire")
    return 0


def _schema_file(path: str, schema_type: str | None) -> tuple[str, str]:
    text = Path(path).read_text(encoding="utf-8")
    return text, schema_type or ("XML" if path.endswith(".xsd") else "JSON")


def cmd_schema(args: argparse.Namespace) -> int:
    settings = _settings(args)
    upgrade(settings.database_url)

    async def work(session: Any) -> Any:
        if args.action == "list":
            subjects = await registry.list_subjects(session)
            return {s: await registry.list_versions(session, s) for s in subjects}
        if args.action == "show":
            version = registry.parse_version(args.version or "latest")
            return (await registry.get_version(session, args.subject, version)).as_confluent()
        text, schema_type = _schema_file(args.file, args.type)
        parsed = registry.parse_schema(schema_type, text)
        if args.action == "check":
            try:
                problems = await registry.test_compatibility(session, args.subject, "all", parsed)
            except RegistryError as e:
                if e.code != 40401:
                    raise
                problems = []
            return {"is_compatible": not problems, "messages": problems}
        schema_id, version, created = await registry.register(
            session, args.subject, parsed, actor=cli_actor(), text=text
        )
        return {"id": schema_id, "version": version, "created": created}

    if args.action == "load":
        changes = asyncio.run(_load_bundled(settings, Path(args.directory)))
        print("\n".join(changes) if changes else "no changes")
        return 1 if any(c.startswith("refused") for c in changes) else 0
    try:
        out = asyncio.run(_with_session(settings, work))
    except RegistryError as e:
        print(f"error {e.code}: {e.message}", file=sys.stderr)
        return 2
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    return 0 if out.get("is_compatible", True) else 1


async def _load_bundled(settings: Settings, directory: Path) -> list[str]:
    engine = create_engine(settings.database_url)
    try:
        return await load_bundled(session_factory(engine), directory)
    finally:
        await engine.dispose()


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
    settings = _settings(args)
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

    rows = asyncio.run(_with_session(settings, work))
    _print_rows(rows, model, columns, as_json=args.json, header=True)
    return 0


def _print_rows(
    rows: list[Any], model: Any, columns: tuple[str, ...], *, as_json: bool, header: bool
) -> None:
    if as_json:
        for r in rows:
            doc = {c.name: getattr(r, c.name) for c in model.__table__.columns}
            sys.stdout.write(orjson.dumps(doc).decode() + "\n")
        sys.stdout.flush()
        return
    table = [[_cell(getattr(r, c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in table)]) for i, c in enumerate(columns)]
    if header:
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)), flush=True)


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    value = datetime.fromisoformat(text)
    # A bare date or time is read as Vietnam time, as an auditor would mean it.
    return value if value.tzinfo else value.replace(tzinfo=VIETNAM)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Check hashes, links, gaps and signed checkpoints; exit 1 on any finding."""
    from gateway.audit.chain import load_public_key
    from gateway.audit.verify import verify_store

    settings = _settings(args)
    keys = None
    if args.keys:
        doc = orjson.loads(Path(args.keys).read_bytes())
        keys = {k["key_id"]: load_public_key(k["public_key"]) for k in doc["keys"]}

    async def run() -> Any:
        engine = create_engine(settings.database_url)
        try:
            return await verify_store(
                session_factory(engine),
                since=_when(args.since),
                until=_when(args.until),
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
    """Export the checkpoint keys, for an auditor to verify later against this file."""
    from gateway.store.models import AuditSigningKey

    async def work(session: Any) -> list[dict[str, Any]]:
        rows = (await session.scalars(select(AuditSigningKey))).all()
        return [
            {
                "key_id": k.key_id,
                "instance": k.instance,
                "public_key": k.public_key,
                "registered_at": k.registered_at.isoformat(),
            }
            for k in rows
        ]

    keys = asyncio.run(_with_session(_settings(args), work))
    print(orjson.dumps({"keys": keys}, option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    """Stream matching exchanges to a CSV or JSON Lines file, with a progress bar."""
    from tqdm import tqdm

    from gateway.audit import query
    from gateway.store.models import AuditRead

    settings = _settings(args)
    f = query.AuditFilter(
        since=_when(args.since),
        until=_when(args.until),
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
    settings = _settings(args)

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
                    _print_rows(rows, AuditRecord, AUDIT_COLUMNS, as_json=args.json, header=header)
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

    settings = _settings(args)
    cutoff = _when(args.before)
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
            f"purged {record.count} records ({_cell(record.first_started_at)} .. "
            f"{_cell(record.last_started_at)}); chain heads kept: "
            + orjson.dumps(record.heads).decode()
        )
    return 0


def cmd_audit_indexer(args: argparse.Namespace) -> int:
    """Consume the audit topic into the store until SIGINT/SIGTERM."""
    from gateway.audit.indexer import Indexer
    from gateway.audit.log import kafka_settings
    from gateway.audit.retention import retention_loop
    from gateway.audit.store import AuditStore

    settings = _settings(args)
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
            AuditStore(sessions, source="indexer"),
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


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if hasattr(value, "isoformat"):
        return str(value.isoformat(timespec="seconds"))
    return str(value)


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.ops.demo import run_demo

    return run_demo(
        port=args.port,
        simulator_port=args.simulator_port,
        check=args.check,
        policies=Path(args.policies),
    )


# -- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lgsp", description=__doc__)
    p.add_argument("--database-url", help="overrides LGSP_DATABASE_URL")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--no-migrate", action="store_true", help="do not upgrade the schema")
    serve.add_argument(
        "--workers",
        type=int,
        help="worker processes on the one port (default LGSP_WORKERS; 0: one per core "
        "if LGSP_REDIS_URL is set, else 1)",
    )
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("migrate", help="upgrade the database schema").set_defaults(func=cmd_migrate)

    from gateway.ops import cli_policy  # its commands use this module's helpers

    cli_policy.add_commands(sub)

    client = sub.add_parser("client", help="departmental systems and their credentials")
    csub = client.add_subparsers(dest="client_command", required=True)
    create = csub.add_parser("create", help="create a client and print its first credential")
    create.add_argument("code")
    create.add_argument("--agency", required=True, help="agency code of the owning agency")
    create.add_argument("--name", required=True)
    create.add_argument("--api-key", action="store_true", help="issue an API key, not a secret")
    create.add_argument(
        "--role",
        action="append",
        default=[],
        choices=get_args(Role),
        help="an administrative role or right (repeatable); departmental systems need none",
    )
    create.set_defaults(func=cmd_client_create)
    cred = csub.add_parser("credential", help="issue another secret or API key")
    cred.add_argument("code")
    cred.add_argument("--api-key", action="store_true")
    cred.add_argument("--replace", action="store_true", help="revoke the client's others")
    cred.set_defaults(func=cmd_client_credential)
    revoke = csub.add_parser("revoke", help="revoke a credential by id")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=cmd_credential_revoke)

    keys = sub.add_parser("keys", help="token-signing keys")
    keys.add_argument("action", choices=["rotate"])
    keys.set_defaults(func=cmd_keys_rotate)

    schema = sub.add_parser("schema", help="the schema registry")
    ssub = schema.add_subparsers(dest="action", required=True)
    reg = ssub.add_parser("register", help="register a schema file as a new version")
    reg.add_argument("subject")
    reg.add_argument("file")
    reg.add_argument("--type", choices=["JSON", "XML"], help="default: by file extension")
    chk = ssub.add_parser("check", help="is a schema file compatible with the subject?")
    chk.add_argument("subject")
    chk.add_argument("file")
    chk.add_argument("--type", choices=["JSON", "XML"])
    ssub.add_parser("list", help="subjects and their versions")
    show = ssub.add_parser("show", help="one version of a subject")
    show.add_argument("subject")
    show.add_argument("version", nargs="?", help="a number or 'latest' (default)")
    load = ssub.add_parser("load", help="register the bundled schemas (idempotent)")
    load.add_argument("directory", nargs="?", default="schemas")
    schema.set_defaults(func=cmd_schema)

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

    idx = sub.add_parser("audit-indexer", help="consume the audit topic into the store")
    idx.add_argument("--no-migrate", action="store_true")
    idx.set_defaults(func=cmd_audit_indexer)

    demo = sub.add_parser("demo", help="run the gateway with the national simulator")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--simulator-port", type=int, default=8090)
    demo.add_argument(
        "--check", action="store_true", help="run the printed steps, report, and stop"
    )
    demo.add_argument("--policies", default="policies", help="policy directory to load")
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))
