"""`lgsp serve` without an audit log, for bench/audit.py's "no audit" baseline only.

The product has no switch to turn the audit log off, on purpose; this bench-only entry
point hands `create_app` a sink that records nothing, so that the cost of the audit log
can be measured against the same gateway without it. Settings come from the `LGSP_*`
environment as for `lgsp serve`; the database must already be migrated.

    .venv/bin/python -m bench._audit_gateway
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.audit.event import AuditEvent
from gateway.core.logging import configure_logging
from gateway.core.settings import load_settings
from gateway.edge.app import create_app


class NullSink:
    """An `AuditSink` that keeps nothing and answers at once."""

    async def start(self) -> None:
        return None

    async def write(self, event: AuditEvent) -> None:
        return None

    async def close(self) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"mode": "none (benchmark baseline)"}


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    web.run_app(
        create_app(settings, audit=NullSink()),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
