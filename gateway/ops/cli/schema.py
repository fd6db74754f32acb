"""`lgsp schema ...`: the schema registry from the host."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson

from gateway.ops.cli.common import (
    cli_actor,
    register_bundled,
    settings_from,
    with_session,
)
from gateway.registry import store as registry
from gateway.registry.store import RegistryError
from gateway.store.migrate import upgrade


def _schema_file(path: str, schema_type: str | None) -> tuple[str, str]:
    text = Path(path).read_text(encoding="utf-8")
    return text, schema_type or ("XML" if path.endswith(".xsd") else "JSON")


def cmd_schema(args: argparse.Namespace) -> int:
    settings = settings_from(args)
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
        changes = asyncio.run(register_bundled(settings, Path(args.directory)))
        print("\n".join(changes) if changes else "no changes")
        return 1 if any(c.startswith("refused") for c in changes) else 0
    try:
        out = asyncio.run(with_session(settings, work))
    except RegistryError as e:
        print(f"error {e.code}: {e.message}", file=sys.stderr)
        return 2
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    return 0 if out.get("is_compatible", True) else 1


def add_commands(sub: Any) -> None:
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
