"""`lgsp`: run the gateway and administer it from the host it runs on."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.core.logging import configure_logging
from gateway.ops import serve, witness
from gateway.ops.cli import accounts, audit, clients, policy, schema
from gateway.ops.cli.common import (
    settings_from,
)
from gateway.store.migrate import upgrade

# -- commands ---------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_from(args)
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
    settings = settings_from(args)
    upgrade(settings.database_url)
    print(f"database at {settings.database_url} is up to date")
    return 0


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

    for group in (policy, clients, schema, audit, witness, accounts):
        group.add_commands(sub)

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
