"""Who changes the configuration, and the roles that decide what they may change.

The admin API acts for a client (`admin-api:<client>`); the web console will act for a
person (`person:<account>`). Both call the same operations with an `Actor`, whose name
is what the policy version and every admin event record, and whose comment says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ADMINISTER",
    "ADMINISTRATOR",
    "OPERATE",
    "OPERATOR",
    "OPERATOR_KINDS",
    "READ",
    "Actor",
]

ADMINISTRATOR = "administrator"
OPERATOR = "operator"
READ = (ADMINISTRATOR, OPERATOR, "auditor", "observer")
OPERATE = (ADMINISTRATOR, OPERATOR)
ADMINISTER = (ADMINISTRATOR,)
# What an operator's change may touch (policy diff kinds). Access rights, clients,
# groups and agencies are the administrator's.
OPERATOR_KINDS = frozenset({"service", "upstream", "rate_limit"})


@dataclass(frozen=True, slots=True)
class Actor:
    """The one making a change: recorded as `name`, with `comment`, from `source`."""

    kind: Literal["client", "person"]
    code: str  # the client code, or the person's account
    roles: frozenset[str]
    comment: str | None = None
    source: str = "admin-api"  # the policy version's source

    @classmethod
    def client(cls, code: str, roles: frozenset[str], comment: str | None = None) -> Actor:
        """A client calling the admin API.

        Example:
            >>> Actor.client("quantri", frozenset({"administrator"})).name
            'admin-api:quantri'
        """
        return cls("client", code, roles, comment, "admin-api")

    @classmethod
    def person(cls, account: str, roles: frozenset[str], comment: str | None = None) -> Actor:
        """A person at the web console.

        Example:
            >>> Actor.person("nva", frozenset({"operator"}), "provider slow").name
            'person:nva'
        """
        return cls("person", account, roles, comment, "console")

    @property
    def name(self) -> str:
        return f"admin-api:{self.code}" if self.kind == "client" else f"person:{self.code}"

    @property
    def label(self) -> str:
        """How a refusal names the actor: "Client 'vanhanh'", "Account 'nva'"."""
        return f"{'Client' if self.kind == 'client' else 'Account'} '{self.code}'"

    @property
    def member(self) -> dict[str, str]:
        """The problem member that names the actor in a refusal."""
        return {"client": self.code} if self.kind == "client" else {"account": self.code}
