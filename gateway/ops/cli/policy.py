"""`lgsp policy validate | diff | apply | export | history | rollback` and `lgsp admin create`:
the province's configuration as files kept in git, against the versioned state in the store.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from gateway.config import schema_refs
from gateway.config import versions as policy_state
from gateway.config.diff import diff
from gateway.config.policy import PolicySet, load_policy_dir, policy_yaml, with_mapping_digests
from gateway.core.settings import Settings
from gateway.ops.cli.common import (
    VIETNAM,
    cli_actor,
    issue_credential,
    register_bundled,
    settings_from,
    with_session,
)
from gateway.registry.bundled import read_bundled
from gateway.store.migrate import upgrade
from gateway.upstream.allowlist import OutboundPolicy


def _load(directory: str, settings: Settings) -> PolicySet | None:
    try:
        policy = load_policy_dir(Path(directory))
        bad = policy_state.refused_upstreams(policy, OutboundPolicy.from_settings(settings))
        if bad:
            raise ValueError(policy.located("; ".join(bad)))
    except (ValidationError, ValueError, OSError) as e:
        print(f"policy files in {directory} are not valid:\n{e}", file=sys.stderr)
        return None
    return policy


def _unregistered(policy: PolicySet, settings: Settings) -> tuple[list[str], str]:
    """The schema references of `policy` that do not resolve, against the schemas
    `policy apply` would find: the store's registry (when there is one to read) and the
    project's schemas/, which apply registers first. Returns them and what was asked."""
    bundled = frozenset(f.subject for f in read_bundled(settings.schemas_dir))
    where = f"the schema files in {settings.schemas_dir}/"

    async def registry(session: Any) -> list[str]:
        return await schema_refs.unregistered_schemas(session, policy, bundled)

    if _store_exists(settings.database_url):
        try:
            problems: list[str] = asyncio.run(with_session(settings, registry))
            return problems, f"the registry at {settings.database_url} and {where}"
        except (OSError, SQLAlchemyError) as e:
            where += f" only (the registry cannot be read: {type(e).__name__})"
    else:
        where += " only (no store yet)"
    return asyncio.run(schema_refs.unregistered_schemas(None, policy, bundled)), where


def _store_exists(url: str) -> bool:
    """False for a SQLite file not made yet: validating must not create it."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return True
    database = parsed.database
    return database is not None and database != ":memory:" and Path(database).exists()


def cmd_validate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    policy = _load(args.directory, settings)
    if policy is None:
        return 2
    problems, asked = _unregistered(policy, settings)
    if problems:
        print(
            f"policy files in {args.directory} are not valid (schemas checked against {asked}):\n"
            + policy.located("; ".join(problems)),
            file=sys.stderr,
        )
        return 2
    print(
        f"ok: {len(policy.agencies)} agencies, {len(policy.clients)} clients, "
        f"{len(policy.services)} services, {len(policy.rate_limits)} rate limits, "
        f"{len(policy.issuers)} trusted issuers"
    )
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    policy = _load(args.directory, settings)
    if policy is None:
        return 2
    upgrade(settings.database_url)
    current = asyncio.run(with_session(settings, policy_state.current_policy))
    # As `apply` would stamp it: mapping files edited since the last apply show too.
    changes = diff(current, with_mapping_digests(policy))
    if not changes:
        print("no changes: the store already holds these files' configuration")
        return 0
    print("\n".join(c.render() for c in changes))
    print(f"{len(changes)} change(s); `lgsp policy apply {args.directory}` makes them")
    return 1 if args.exit_code else 0


def cmd_apply(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    policy = _load(args.directory, settings)
    if policy is None:
        return 2
    upgrade(settings.database_url)
    # Services name registered schemas: make sure the bundled ones are there first.
    asyncio.run(register_bundled(settings, settings.schemas_dir))
    outbound = OutboundPolicy.from_settings(settings)
    return _report(
        settings,
        lambda s: policy_state.commit_policy(
            s, policy, actor=cli_actor(), source="apply", comment=args.comment, outbound=outbound
        ),
        verb="applied",
        located=policy.located,
    )


def cmd_rollback(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    upgrade(settings.database_url)
    return _report(
        settings,
        lambda s: policy_state.rollback(
            s,
            args.version,
            actor=cli_actor(),
            comment=args.comment,
            outbound=OutboundPolicy.from_settings(settings),
        ),
        verb=f"rolled back to version {args.version} as",
    )


def _report(
    settings: Settings, work: Any, *, verb: str, located: Callable[[str], str] = str
) -> int:
    try:
        commit: policy_state.PolicyCommit = asyncio.run(with_session(settings, work))
    except policy_state.PolicyRejected as e:
        print(f"not applied:\n{located(str(e))}", file=sys.stderr)
        return 2
    except ValidationError as e:
        print(f"not applied: {e}", file=sys.stderr)
        return 2
    if commit.version is None:
        print("no changes")
        return 0
    print("\n".join(c.render() for c in commit.changes))
    print(f"{verb} policy version {commit.version} ({len(commit.changes)} change(s))")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    upgrade(settings.database_url)

    async def work(session: Any) -> PolicySet:
        if args.version is not None:
            return await policy_state.version_policy(session, args.version)
        return await policy_state.current_policy(session)

    try:
        policy = asyncio.run(with_session(settings, work))
    except policy_state.PolicyRejected as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    which = f"version {args.version}" if args.version is not None else "the current state"
    text = policy_yaml(policy, header=f"# lgsp policy export: {which}\n")
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {which} to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    upgrade(settings.database_url)
    rows = asyncio.run(with_session(settings, lambda s: policy_state.history(s, limit=args.limit)))
    if not rows:
        print("no policy versions yet: `lgsp policy apply` makes the first")
        return 0
    for r in reversed(rows):
        at = r.at.astimezone(VIETNAM).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{r.id:>5}  {at}  {r.actor}  [{r.source}]  {r.comment or ''}".rstrip())
        for line in r.changes[: args.changes]:
            print(f"         {line}")
        if len(r.changes) > args.changes:
            print(f"         … and {len(r.changes) - args.changes} more")
    return 0


def cmd_admin_create(args: argparse.Namespace) -> int:
    """The first administrator: an admin client and its secret, from the host's shell."""
    settings = settings_from(args)
    upgrade(settings.database_url)

    async def work(session: Any) -> dict[str, Any]:
        def add(doc: dict[str, Any]) -> None:
            if not any(a["code"] == args.agency for a in doc["agencies"]):
                if not args.agency_name:
                    raise policy_state.PolicyRejected(
                        f"no agency {args.agency!r}: apply the policy files first, or pass "
                        "--agency-name to create it"
                    )
                doc["agencies"].append({"code": args.agency, "name": args.agency_name})
            if any(c["code"] == args.code for c in doc["clients"]):
                raise policy_state.PolicyRejected(f"client {args.code!r} already exists")
            doc["clients"].append(
                {
                    "code": args.code,
                    "agency": args.agency,
                    "name": args.name,
                    "roles": ["administrator"],
                }
            )

        await policy_state.edit_policy(
            session, add, actor=cli_actor(), source="cli", comment="lgsp admin create"
        )
        return await issue_credential(session, args.code, False, replace=False)

    try:
        out = asyncio.run(with_session(settings, work))
    except (policy_state.PolicyRejected, ValidationError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"administrator {out['client_id']} created; its secret (shown once):")
    print(out["client_secret"])
    print(
        "Get a token: curl -u "
        f"'{out['client_id']}:<secret>' -d grant_type=client_credentials "
        f"{settings.issuer}/oauth2/token\n"
        "Then call the admin API with 'Authorization: Bearer <token>' "
        f"({settings.issuer}/admin/v1/openapi.json describes it). Add this client to your "
        "policy files (`lgsp policy export` shows it), or the next `policy apply` of files "
        "without it would refuse to remove the last administrator.",
        file=sys.stderr,
    )
    return 0


def add_commands(sub: Any) -> None:
    policy = sub.add_parser("policy", help="the configuration as files: validate, diff, apply…")
    psub = policy.add_subparsers(dest="action", required=True)
    for name, func, text in (
        (
            "validate",
            cmd_validate,
            "check the files: fields, references, upstream addresses, schemas",
        ),
        ("diff", cmd_diff, "what `apply` would change in the store"),
        ("apply", cmd_apply, "make the store hold the files' configuration (a new version)"),
    ):
        p = psub.add_parser(name, help=text)
        p.add_argument("directory", nargs="?", default="policies")
        p.set_defaults(func=func)
        if name == "apply":
            p.add_argument("--comment", help="why: kept with the version and its records")
        if name == "diff":
            p.add_argument("--exit-code", action="store_true", help="exit 1 when there are changes")
    exp = psub.add_parser("export", help="the current (or an earlier) configuration as YAML")
    exp.add_argument("--version", type=int, help="a version from `lgsp policy history`")
    exp.add_argument("-o", "--output", help="file to write (default: standard output)")
    exp.set_defaults(func=cmd_export)
    hist = psub.add_parser("history", help="policy versions: who, when, why, what")
    hist.add_argument("--limit", type=int, default=20)
    hist.add_argument("--changes", type=int, default=5, help="change lines shown per version")
    hist.set_defaults(func=cmd_history)
    rb = psub.add_parser("rollback", help="return to an earlier version (as a new version)")
    rb.add_argument("version", type=int)
    rb.add_argument("--comment")
    rb.set_defaults(func=cmd_rollback)

    admin = sub.add_parser("admin", help="administrators of the gateway")
    asub = admin.add_subparsers(dest="admin_command", required=True)
    create = asub.add_parser("create", help="bootstrap an administrator and print its secret")
    create.add_argument("code", help="client code, e.g. quantri")
    create.add_argument("--agency", required=True, help="agency code of the administrator's body")
    create.add_argument("--agency-name", help="create the agency too, with this name")
    create.add_argument("--name", default="Quản trị hệ thống", help="display name")
    create.set_defaults(func=cmd_admin_create)
