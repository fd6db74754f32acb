"""What applying a policy would change: entity by entity, field by field.

Both sides are first put in a canonical form (lists that are sets sorted, methods in
capitals), so a reordered file is no change at all. The same diff drives `lgsp policy
diff`, what `apply` writes to the store, the admin-event records and the change list of
each policy version.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from gateway.config.policy import PolicySet, policy_document

# Order in which changes are written: what others refer to comes first (and goes last).
KINDS = (
    "agency",
    "group",
    "client",
    "upstream",
    "service",
    "access",
    "rate_limit",
    "issuer",
    "topic",
    "job",
)
_LABELS = {
    "agency": "agency",
    "group": "group",
    "client": "client",
    "upstream": "upstream",
    "service": "service",
    "access": "access rights of",
    "rate_limit": "rate limit",
    "issuer": "trusted issuer",
    "topic": "topic",
    "job": "scheduled job",
}

Op = Literal["create", "update", "delete"]


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # one of KINDS
    key: str
    op: Op
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @property
    def summary(self) -> str:
        if self.kind == "access":
            verb = {"create": "granted", "update": "replaced", "delete": "removed"}[self.op]
            return f"{verb} access rights of {self.key}"
        verb = {"create": "created", "update": "updated", "delete": "deleted"}[self.op]
        return f"{verb} {_LABELS[self.kind]} {self.key}"

    def details(self) -> list[str]:
        """Field-level lines: `path: old → new` for updates; rights one per line."""
        if self.kind == "access":
            old = {_right(r) for r in (self.before or {}).get("rights", [])}
            new = {_right(r) for r in (self.after or {}).get("rights", [])}
            return [f"- {r}" for r in sorted(old - new)] + [f"+ {r}" for r in sorted(new - old)]
        if self.op != "update":
            return []
        old_flat = dict(_flatten(self.before or {}))
        new_flat = dict(_flatten(self.after or {}))
        lines = []
        for path in sorted(old_flat.keys() | new_flat.keys()):
            a, b = old_flat.get(path, "(unset)"), new_flat.get(path, "(unset)")
            if a != b:
                lines.append(f"{path}: {_show(a)} → {_show(b)}")
        return lines

    def render(self) -> str:
        sign = {"create": "+", "update": "~", "delete": "-"}[self.op]
        lines = [f"{sign} {self.summary}"]
        lines += [f"    {d}" for d in self.details()]
        return "\n".join(lines)


def _right(r: list[str]) -> str:
    kind, subject, method, path = r
    return f"{method} {path} ({kind} {subject})"


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _flatten(doc: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for k, v in doc.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            yield from _flatten(v, path + ".")
        else:
            yield path, v


def entities(doc: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """A policy document (`policy_document`) as {kind: {key: fields}}: the unit of diff
    and of apply. The document is canonical already (sets sorted, methods in capitals)."""
    out: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in KINDS}
    for section, kind, key_field in (
        ("agencies", "agency", "code"),
        ("groups", "group", "code"),
        ("clients", "client", "code"),
        ("upstreams", "upstream", "name"),
    ):
        for item in doc[section]:
            out[kind][item[key_field]] = {k: v for k, v in item.items() if k != key_field}
    for svc in doc["services"]:
        key = f"{svc['provider']}/{svc['code']}/{svc['version']}"
        out["service"][key] = {
            k: v for k, v in svc.items() if k not in ("access", "provider", "code", "version")
        }
        rights = sorted(
            {
                (
                    "client" if a.get("client") else "group",
                    a.get("client") or a.get("group") or "",
                    a.get("method", "*"),
                    a.get("path", "/**"),
                )
                for a in svc.get("access", [])
            }
        )
        if rights:
            out["access"][key] = {"rights": [list(r) for r in rights]}
    for t in doc.get("topics", []):
        out["topic"][t["code"]] = {k: v for k, v in t.items() if k != "code"}
    for j in doc.get("jobs", []):
        out["job"][j["code"]] = {k: v for k, v in j.items() if k != "code"}
    for r in doc["rate_limits"]:
        out["rate_limit"][rate_limit_key(r.get("client"), r.get("service"))] = r
    for i in doc.get("issuers", []):
        out["issuer"][i["issuer"]] = {k: v for k, v in i.items() if k != "issuer"}
    return out


def rate_limit_key(client: str | None, service: str | None) -> str:
    if client and service:
        return f"client {client} on {service}"
    return f"client {client}" if client else f"service {service}"


def diff(old: PolicySet, new: PolicySet) -> list[Change]:
    """Changes that turn `old` into `new`."""
    return diff_documents(policy_document(old), policy_document(new))


def diff_documents(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Changes that turn document `old` into `new`: creates and updates in dependency
    order, then deletes in reverse dependency order."""
    before, after = entities(old), entities(new)
    upserts: list[Change] = []
    deletes: list[Change] = []
    for kind in KINDS:
        b, a = before[kind], after[kind]
        for key in sorted(a):
            if key not in b:
                upserts.append(Change(kind, key, "create", None, a[key]))
            elif a[key] != b[key]:
                upserts.append(Change(kind, key, "update", b[key], a[key]))
    for kind in reversed(KINDS):
        b, a = before[kind], after[kind]
        deletes += [Change(kind, key, "delete", b[key], None) for key in sorted(b) if key not in a]
    return upserts + deletes
