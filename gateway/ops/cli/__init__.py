"""`lgsp`: the command line on the gateway host (serve, migrate, policy, clients, keys,
schemas, the audit log, the demo). Each command group is a module with
`add_commands(subparsers)`; `main` assembles them."""

from gateway.ops.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
