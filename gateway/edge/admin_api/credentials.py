"""Clients' credentials over HTTP: list them (never their values), issue one (or pin a
client certificate: `{"kind": "certificate", "pin": "subject:CN=..."}`), rotate
them with a grace period, revoke one. Each change is an admin event, and this gateway's
tables are rebuilt before the answer, so a revoked credential fails on the next request.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from gateway.admin import credentials as ops
from gateway.admin.actor import ADMINISTER
from gateway.admin.refusals import parse
from gateway.edge.admin_api.api import ADMIN, BODY, editor
from gateway.edge.admin_api.models import (
    CommentQuery,
    CredentialIssue,
    CredentialList,
    CredentialOut,
    CredentialRotate,
    IssuedCredential,
    RotationOut,
)
from gateway.edge.reload import reload_config
from gateway.edge.toolkit import NO_STORE, Body, Call, NoQuery, Reply, Route, json_response

__all__ = ["ROUTES"]


def _shown(view: ops.CredentialView) -> dict[str, Any]:
    fields = dataclasses.asdict(view)
    secret = fields.pop("secret")
    if secret is None:
        # A certificate has no value to show, once or ever: its pin is in the listing.
        return CredentialOut.model_validate(fields).model_dump(mode="json")
    return IssuedCredential.model_validate({**fields, "secret": secret}).model_dump(mode="json")


async def list_credentials(call: Call[NoQuery]) -> web.StreamResponse:
    views = await ops.list_credentials(call.state.sessions, call.path["code"])
    return json_response({"items": [_shown(v) for v in views]})


async def issue_credential(call: Call[CommentQuery]) -> web.StreamResponse:
    asked = parse(CredentialIssue, await call.json(BODY), "The credential request")
    actor = editor(call).actor
    if asked.kind == "certificate" and asked.pin is not None:
        view = await ops.pin_certificate(
            call.state.sessions, actor, call.path["code"], asked.pin, asked.expires_at
        )
    else:
        view = await ops.issue_credential(
            call.state.sessions, actor, call.path["code"], asked.kind, asked.expires_at
        )
    await reload_config(call.state)
    return json_response(_shown(view), status=201, headers=NO_STORE)


async def rotate_credential(call: Call[CommentQuery]) -> web.StreamResponse:
    asked = parse(CredentialRotate, await call.json(BODY), "The rotation request")
    actor = editor(call).actor
    rotation = await ops.rotate(
        call.state.sessions, actor, call.path["code"], asked.kind, asked.grace_seconds
    )
    await reload_config(call.state)
    answer = {
        "issued": _shown(rotation.issued),
        "revoked": [_shown(v) for v in rotation.revoked],
        "expiring": [_shown(v) for v in rotation.expiring],
    }
    return json_response(answer, status=201, headers=NO_STORE)


async def revoke_credential(call: Call[CommentQuery]) -> web.StreamResponse:
    credential_id = call.path_int("id", "credential")
    view = await ops.revoke_credential(call.state.sessions, editor(call).actor, credential_id)
    await reload_config(call.state)
    return json_response(_shown(view))


ROUTES: tuple[Route, ...] = (
    ADMIN.route(
        "GET",
        "/clients/{code}/credentials",
        list_credentials,
        "A client's credentials (never their values)",
        reply=Reply(200, "Every credential of the client, active or not.", CredentialList),
        roles=ADMINISTER,
    ),
    ADMIN.route(
        "POST",
        "/clients/{code}/credentials",
        issue_credential,
        "Issue a client secret or API key, or pin a client certificate",
        reply=Reply(
            201,
            "The new credential, with its value (shown this once only); a certificate's "
            "answer has its pin and no value.",
            IssuedCredential,
        ),
        roles=ADMINISTER,
        body=Body(CredentialIssue),
        query=CommentQuery,
    ),
    ADMIN.route(
        "POST",
        "/clients/{code}/credentials/rotate",
        rotate_credential,
        "Issue a new credential and retire the client's others of that kind",
        reply=Reply(
            201,
            "The new credential (with its value, shown once) and what became of the others.",
            RotationOut,
        ),
        roles=ADMINISTER,
        body=Body(CredentialRotate),
        query=CommentQuery,
    ),
    ADMIN.route(
        "DELETE",
        "/credentials/{id}",
        revoke_credential,
        "Revoke a credential (and the tokens issued for it) at once",
        reply=Reply(200, "The credential, revoked.", CredentialOut),
        roles=ADMINISTER,
        query=CommentQuery,
        path_integers=("id",),
    ),
)
