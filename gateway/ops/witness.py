"""`lgsp witness`: a transparency-log witness over HTTP (c2sp.org/tlog-witness), for another
province's gateway, the provincial inspectorate or the national platform to run.

    lgsp witness --name thanhtra.hanam.gov.vn/witness --key var/witness.pem \\
        --log "lgsp.hanam.gov.vn/audit/gw-1+1a2b3c4d+AbCd..." --port 8095

It answers POST <prefix>/add-checkpoint and nothing else; the decision is in
gateway/audit/witness.py. `--print-key` prints its verifier key (give it to the gateway's
LGSP_AUDIT_WITNESSES and to auditors) and exits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.note import COSIGNATURE, NoteSigner, NoteVerifier
from gateway.audit.witness import Witness
from gateway.core.logging import configure_logging, log
from gateway.identity.keys import write_private_key

__all__ = ["add_commands", "witness_app"]

MAX_REQUEST = 128 * 1024  # a checkpoint note (<= 64 KiB) and at most 63 proof lines


def witness_app(witness: Witness) -> web.Application:
    """The witness's HTTP interface: POST /add-checkpoint."""

    async def add_checkpoint(request: web.Request) -> web.Response:
        try:
            body = (await request.read()).decode()
        except UnicodeDecodeError:
            return web.Response(status=400, text="the body is UTF-8\n")
        answer = await witness.add_checkpoint(body)
        if answer.status != 200:
            log.warning("witness refused a checkpoint", status=answer.status, why=answer.body)
        return web.Response(status=answer.status, text=answer.body, content_type=answer.media_type)

    app = web.Application(client_max_size=MAX_REQUEST)
    app.router.add_post("/add-checkpoint", add_checkpoint)
    return app


def _key(path: Path, passphrase: str | None) -> Ed25519PrivateKey:
    secret = passphrase.encode() if passphrase else None
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), secret)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 key")
        return key
    key = Ed25519PrivateKey.generate()
    write_private_key(path, key, secret)
    return key


def _logs(values: list[str]) -> list[NoteVerifier]:
    out: list[NoteVerifier] = []
    for value in values:
        lines = Path(value[1:]).read_text().splitlines() if value.startswith("@") else [value]
        out += [NoteVerifier.parse(x) for x in lines if x.strip() and not x.startswith("#")]
    return out


def cmd_witness(args: argparse.Namespace) -> int:
    from gateway.core.settings import Settings

    settings = Settings()
    configure_logging(settings.log_level)
    try:
        signer = NoteSigner(args.name, _key(Path(args.key), settings.key_passphrase), COSIGNATURE)
        logs = _logs(args.log)
    except (ValueError, OSError) as e:  # NoteError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.print_key:
        print(signer.verifier().vkey())
        return 0
    if not logs:
        print("give at least one --log verifier key to witness", file=sys.stderr)
        return 2
    witness = Witness(signer, logs, Path(args.state))
    log.info("witness", key=signer.verifier().vkey(), logs=[v.name for v in logs])
    web.run_app(witness_app(witness), host=args.host, port=args.port, print=None)
    return 0


def add_commands(sub: Any) -> None:
    w = sub.add_parser("witness", help="run a transparency-log witness that cosigns checkpoints")
    w.add_argument("--name", required=True, help="its key name, a schema-less URL")
    w.add_argument("--key", required=True, help="its Ed25519 key (PEM; created if absent)")
    w.add_argument("--log", action="append", default=[], help="a log's verifier key, or @file")
    w.add_argument("--state", default="var/witness-state.json", help="what it cosigned last")
    w.add_argument("--host", default="127.0.0.1")
    w.add_argument("--port", type=int, default=8095)
    w.add_argument("--print-key", action="store_true", help="print its verifier key and exit")
    w.set_defaults(func=cmd_witness)
