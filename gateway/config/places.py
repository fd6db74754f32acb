"""Where a policy entity was written, for messages a person reads: its file and its key
(`policies/population.yaml: service 000.00.00.G01/csdlqg-dancu/v1`), not the index it
has in the merged lists (`services.3`), and pydantic's errors without its input dump and
documentation URL.

The validators themselves name entities by index (`services[3].upstream: ...`): that is
the admin API's contract (gateway/admin/refusals.py turns it into `field`), and a
document sent there has no files. `load_policy_dir` and the `lgsp policy` commands
rewrite those names with `Places`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

__all__ = ["KINDS", "Places", "entity_key"]

# Section -> what one of its entities is called.
KINDS: dict[str, str] = {
    "agencies": "agency",
    "groups": "group",
    "clients": "client",
    "upstreams": "upstream",
    "services": "service",
    "rate_limits": "rate limit",
    "issuers": "trusted issuer",
    "topics": "topic",
    "jobs": "job",
}
_INDEXED = re.compile(r"^(" + "|".join(KINDS) + r")\[(\d+)\](?:\.(.*?))?: (.*)$", re.S)
_VALUE_ERROR = "Value error, "


def entity_key(section: str, item: Any) -> str | None:
    """The key of one entity as written (a dict from a file), or None when it has none.

    Example:
        >>> entity_key("services", {"provider": "000.00.00.G01", "code": "x", "version": "v1"})
        '000.00.00.G01/x/v1'
    """
    if not isinstance(item, Mapping):
        return None
    if section == "services":
        parts = [item.get(k) for k in ("provider", "code", "version")]
        return "/".join(str(p) for p in parts) if all(parts) else None
    if section == "rate_limits":
        who = [str(item[k]) for k in ("client", "service") if item.get(k)]
        return " on ".join(who) or None
    if section == "issuers":
        return None if item.get("issuer") is None else str(item["issuer"])
    value = item.get("name" if section == "upstreams" else "code")
    return None if value is None else str(value)


class Places:
    """The file and key of every entity of a merged policy.

    Args:
        files: section -> the file each entity came from, by index.
        items: section -> the entities as written, by index (for their keys).
    """

    def __init__(self, files: Mapping[str, Sequence[str]], items: Mapping[str, Sequence[Any]]):
        self.files = {k: list(v) for k, v in files.items()}
        self.keys = {
            section: [entity_key(section, item) for item in entities]
            for section, entities in items.items()
        }

    def name(self, section: str, index: int) -> str:
        """`<file>: <kind> <key>` for entity `index` of `section`.

        Example:
            >>> places.name("services", 3)
            'policies/population.yaml: service 000.00.00.G01/csdlqg-dancu/v1'
        """
        kind = KINDS.get(section, section)
        keys = self.keys.get(section, [])
        key = keys[index] if index < len(keys) else None
        what = f"{kind} {key}" if key else f"{kind} #{index + 1}"
        files = self.files.get(section, [])
        return f"{files[index]}: {what}" if index < len(files) else what

    def rewrite(self, message: str) -> str:
        """A message of the validators (parts joined by "; ", each `section[i].field:
        why`), one line per part, each naming its file and entity.

        Example:
            >>> places.rewrite("services[0].upstream: no upstream 'x'")
            "a.yaml: service 000.00.00.G01/x/v1: upstream: no upstream 'x'"
        """
        return "\n".join(self._part(part) for part in message.split("; "))

    def _part(self, part: str) -> str:
        m = _INDEXED.match(part)
        if m is None:
            return part
        section, index, field, why = m[1], int(m[2]), m[3], m[4]
        keys = self.keys.get(section, [])
        key = keys[index] if index < len(keys) else None
        # "service X names ..." after "service X:" would say it twice.
        why = why.removeprefix(f"{KINDS[section]} {key} ") if key else why
        where = self.name(section, index)
        return f"{where}: {field}: {why}" if field else f"{where}: {why}"

    def errors(self, e: ValidationError) -> str:
        """A pydantic error, one line per problem: where (file, entity, field) and why,
        without the input it was given or a documentation URL."""
        lines = []
        for err in e.errors(include_url=False, include_input=False):
            loc, why = err["loc"], str(err["msg"]).removeprefix(_VALUE_ERROR)
            if not loc:  # the cross-reference checks: a message naming indexed fields
                lines.append(self.rewrite(why))
                continue
            head = loc[0]
            if isinstance(head, str) and head in KINDS and len(loc) > 1 and isinstance(loc[1], int):
                where = self.name(head, loc[1])
                field = _dotted(loc[2:])
            else:
                where, field = "", _dotted(loc)
            # An entity's own check (an adapter's configuration) may name several fields.
            for part in why.split("; ") if not field else [why]:
                lines.append(": ".join(p for p in (where, field, part) if p))
        return "\n".join(lines)


def _dotted(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
