"""Access rights as a matrix: which systems may call which services, whole. A cell is a
client's right to a whole service (any method, any path: `{"client": c}`); the narrower
rights (a method, a path glob) and the rights of groups stay as they are and are shown
beside it.

Setting the matrix is one edit of the policy document, one new policy version, like any
other change, with the administrator's role required (access rights are not an
operator's to change, gateway/admin/edits.py).

Example:
    >>> doc, _ = await edits.current(sessions)
    >>> whole_service_grants(doc)
    {('motcua', '000.00.00.H49/echo/v1'), ...}
    >>> await set_whole_service_grants(editor, {("motcua", "000.00.00.H49/echo/v1")})
"""

from __future__ import annotations

from typing import Any

from gateway.admin import edits
from gateway.config.versions import PolicyCommit
from gateway.conversion.catalogue import declared_operations
from gateway.core.problems import NOT_FOUND, Problem

__all__ = [
    "endpoint_grants",
    "endpoints",
    "other_rights",
    "service_key",
    "set_endpoint_grants",
    "set_whole_service_grants",
    "whole_service_grants",
]

Grant = tuple[str, str]  # (client code, service key)
Endpoint = tuple[str, str]  # (method or "*", path glob), as an access right holds them
EndpointGrant = tuple[str, str, str]  # (client code, method, path glob)


def service_key(service: dict[str, Any]) -> str:
    """ "provider/code/version", as rate limits and the admin API name a service."""
    return f"{service['provider']}/{service['code']}/{service['version']}"


def _whole(right: dict[str, Any]) -> bool:
    return (
        right.get("client") is not None
        and right.get("method", "*") == "*"
        and right.get("path", "/**") in ("/**", "**")
    )


def whole_service_grants(doc: dict[str, Any]) -> set[Grant]:
    """The (client, service) pairs where the client holds a right to the whole service.

    Example:
        >>> whole_service_grants({"services": [{"provider": "p", "code": "c", "version": "v1",
        ...                                     "access": [{"client": "motcua"}]}]})
        {('motcua', 'p/c/v1')}
    """
    return {
        (right["client"], service_key(s))
        for s in doc["services"]
        for right in s.get("access", [])
        if _whole(right)
    }


def other_rights(doc: dict[str, Any]) -> dict[Grant, list[str]]:
    """The narrower rights each client holds on each service, directly or through a
    group, as a person reads them ("POST /cong-dan/*", "group tthc: POST /cong-dan/tra-cuu").

    Example:
        >>> other_rights(doc)[("hotich", "000.00.00.H49/echo/v1")]
        ['GET /public/**']
    """
    members: dict[str, list[str]] = {}
    for client in doc["clients"]:
        for group in client.get("groups", []):
            members.setdefault(group, []).append(client["code"])
    out: dict[Grant, list[str]] = {}
    for s in doc["services"]:
        for right in s.get("access", []):
            what = f"{right.get('method', '*')} {right.get('path', '/**')}"
            if right.get("client") is not None and not _whole(right):
                out.setdefault((right["client"], service_key(s)), []).append(what)
            elif right.get("group") is not None:
                for code in members.get(right["group"], []):
                    out.setdefault((code, service_key(s)), []).append(
                        f"group {right['group']}: {what}"
                    )
    return out


async def set_whole_service_grants(editor: edits.Editor, grants: set[Grant]) -> PolicyCommit:
    """Make the whole-service rights exactly `grants`, leaving narrower and group rights
    as they are; one policy version (none if nothing changes).

    Raises:
        Problem: 403 for an operator; 422 naming a client or service that is not there.

    Example:
        >>> (await set_whole_service_grants(editor, set())).version
        44
    """

    def change(doc: dict[str, Any]) -> None:
        for s in doc["services"]:
            key = service_key(s)
            # In their order, so that a service whose rights stay the same is unchanged.
            kept = [r for r in s.get("access", []) if not _whole(r) or (r["client"], key) in grants]
            held = {r["client"] for r in kept if _whole(r)}
            added = [{"client": c} for c, k in sorted(grants) if k == key and c not in held]
            s["access"] = kept + added

    return await edits.edit(editor, "The access rights are not valid", change)


def _service(doc: dict[str, Any], key: str) -> dict[str, Any] | None:
    return next((s for s in doc["services"] if service_key(s) == key), None)


def endpoints(doc: dict[str, Any], key: str) -> list[Endpoint]:
    """The service's endpoints (method, path glob): those its adapter declares (a declared
    adapter's operations), then those its rights name, narrower than the whole service,
    a client's or a group's, in order.

    Example:
        >>> endpoints(doc, "000.00.00.H49/echo/v1")
        [('GET', '/public/**')]
    """
    service = _service(doc, key)
    found = {
        (r.get("method", "*"), r.get("path", "/**"))
        for r in (service or {}).get("access", [])
        if not _whole(r) or r.get("group") is not None
    }
    declared = declared_operations((service or {}).get("adapter", "passthrough"))
    named = sorted(e for e in found if e != ("*", "/**") and e != ("*", "**"))
    return declared + [e for e in named if e not in declared]


def endpoint_grants(doc: dict[str, Any], key: str) -> set[EndpointGrant]:
    """The (client, method, path) rights clients hold on one endpoint of the service.

    Example:
        >>> endpoint_grants(doc, "000.00.00.H49/echo/v1")
        {('hotich', 'GET', '/public/**')}
    """
    service = _service(doc, key)
    return {
        (r["client"], r.get("method", "*"), r.get("path", "/**"))
        for r in (service or {}).get("access", [])
        if r.get("client") is not None and not _whole(r)
    }


async def set_endpoint_grants(
    editor: edits.Editor, key: str, shown: set[Endpoint], chosen: set[EndpointGrant]
) -> PolicyCommit:
    """Make the clients' rights on the `shown` endpoints of one service exactly `chosen`,
    leaving whole-service rights, group rights and other endpoints as they are; one policy
    version (none if nothing changes), the same edit as any other change of the policy.

    Raises:
        Problem: 403 for an operator; 404 for a service that is not there; 422 for a
        method or a path glob that is not valid, or a client that is not there.

    Example:
        >>> await set_endpoint_grants(editor, key, {("GET", "/a")}, {("nsd", "GET", "/a")})
    """
    wanted = {(c, m.upper(), p) for c, m, p in chosen if (m.upper(), p) in shown}

    def change(doc: dict[str, Any]) -> None:
        service = _service(doc, key)
        if service is None:
            raise Problem(NOT_FOUND, f"No service {key}.")
        kept: list[dict[str, Any]] = []
        held: set[EndpointGrant] = set()
        for r in service.get("access", []):
            at = (r.get("method", "*"), r.get("path", "/**"))
            mine = r.get("client") is not None and not _whole(r) and at in shown
            if mine and (r["client"], *at) not in wanted:
                continue
            if mine:
                held.add((r["client"], *at))
            kept.append(r)
        added = [{"client": c, "method": m, "path": p} for c, m, p in sorted(wanted - held)]
        service["access"] = kept + added

    return await edits.edit(editor, "The access rights are not valid", change)
