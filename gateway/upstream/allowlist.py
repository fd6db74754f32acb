"""Outbound safety: where the gateway may send exchanges and token requests.

A policy author names upstream URLs; without a check, a URL (or a name that resolves)
pointing at 127.0.0.1, an internal admin port or the cloud metadata service at
169.254.169.254 would turn the gateway into a proxy for them. `OutboundPolicy` holds the
allow-list from the settings `upstream_allowed_networks` and `upstream_allowed_schemes`
and is applied twice:

* to the URL itself (`check_url`, `refusal`): the scheme, and the host when it is an IP
  literal — when a policy is applied, and before each send (decisions cached per host);
* to every address a host name resolves to (`GuardedResolver`), each time the connection
  pool resolves a name, so a DNS answer that changes later (rebinding) is judged again.

Names in the allow-list: "public" (globally routable unicast), "private" (RFC 1918,
RFC 6598 100.64.0.0/10, fc00::/7) and "loopback" (127.0.0.0/8, ::1). Link-local
(169.254.0.0/16, fe80::/10), multicast, unspecified and other special-purpose addresses
belong to none of them: only a CIDR in the list that contains them allows them.
IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) and NAT64 addresses (64:ff9b::a.b.c.d) are
judged as the IPv4 address they carry.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Sequence
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import TYPE_CHECKING, Final

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from gateway.core.logging import log
from gateway.core.networks import (
    METADATA,
    NAMED,
    IPAddress,
    describe,
    host_network,
    is_public,
    numeric_ipv4,
    unwrap,
)
from gateway.core.problems import (
    UPSTREAM_ADDRESS_REFUSED,
    Problem,
)

if TYPE_CHECKING:
    from gateway.core.settings import Settings

NETWORKS_SETTING: Final = "LGSP_UPSTREAM_ALLOWED_NETWORKS"
SCHEMES_SETTING: Final = "LGSP_UPSTREAM_ALLOWED_SCHEMES"
SUPPORTED_SCHEMES: Final = frozenset({"http", "https"})
SECRET_ENV_PREFIX: Final = "LGSP_UPSTREAM_SECRET_"  # noqa: S105 - a name, not a secret
SECRET_ENVS_SETTING: Final = "LGSP_UPSTREAM_SECRET_ENVS"  # noqa: S105


class OutboundRefused(ValueError):
    """An upstream URL the allow-list refuses; the message says what to change."""


class AddressRefused(OSError):
    """Every address a host resolved to is outside the allow-list.

    Raised by `GuardedResolver`; aiohttp wraps it in `ClientConnectorDNSError`, whose
    `os_error` is this exception."""

    def __init__(self, host: str, refused: Sequence[IPAddress], message: str) -> None:
        super().__init__(message)
        self.strerror = message
        self.message = message
        self.host = host
        self.refused = tuple(refused)

    def __str__(self) -> str:
        return self.message


class OutboundPolicy:
    """The allow-list of upstream networks and schemes; build once, share everywhere."""

    def __init__(
        self,
        networks: Iterable[str],
        schemes: Iterable[str],
        secret_envs: Iterable[str] = (),
        settings_envs: Iterable[str] = (),
    ) -> None:
        self.secret_envs = frozenset(secret_envs)
        # The gateway's own settings (LGSP_DATABASE_URL, LGSP_KEY_PASSPHRASE...): never an
        # upstream's secret, whatever the allow-list says.
        self._settings_envs = frozenset(settings_envs)
        self.networks = [str(n).strip() for n in networks]
        self.schemes = [str(s).strip().lower() for s in schemes]
        v4: list[IPv4Network] = []  # CIDRs in the list
        v6: list[IPv6Network] = []
        named_v4: list[IPv4Network] = []  # what the names in the list stand for
        named_v6: list[IPv6Network] = []
        self._public = False
        for entry in self.networks:
            name = entry.lower()
            if name in NAMED:
                self._public = self._public or name == "public"
                named_v4 += NAMED[name][0]
                named_v6 += NAMED[name][1]
                continue
            try:
                net = ip_network(entry, strict=True)
            except ValueError as e:
                raise ValueError(
                    f"{NETWORKS_SETTING}: {entry!r} is neither a network name "
                    f"({', '.join(NAMED)}) nor a CIDR network ({e})"
                ) from None
            if isinstance(net, IPv4Network):
                v4.append(net)
            else:
                v6.append(net)
        if not self.networks:
            raise ValueError(
                f"{NETWORKS_SETTING} is empty: every upstream would be refused. "
                'The default is ["public", "private"].'
            )
        for scheme in self.schemes:
            if scheme not in SUPPORTED_SCHEMES:
                raise ValueError(
                    f"{SCHEMES_SETTING}: {scheme!r} is not a scheme the gateway can call "
                    f"upstreams with (only {', '.join(sorted(SUPPORTED_SCHEMES))})"
                )
        if not self.schemes:
            raise ValueError(f"{SCHEMES_SETTING} is empty: every upstream would be refused.")
        self._v4 = tuple(v4)
        self._v6 = tuple(v6)
        self._named_v4 = tuple(named_v4)
        self._named_v6 = tuple(named_v6)
        self._decisions: dict[tuple[str, str | None], str | None] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        return cls(
            settings.upstream_allowed_networks,
            settings.upstream_allowed_schemes,
            settings.upstream_secret_envs,
            settings_envs=settings.env_names(),
        )

    # -- secrets --------------------------------------------------------------------------

    def secret_refusal(self, name: str) -> str | None:
        """Why an upstream may not read the environment variable `name` as its secret.

        An upstream's `client_secret_env` is sent to its token URL: were it free, whoever
        may edit upstreams could have any variable of the gateway's process sent to a
        listener of theirs. So only variables declared for it may be named: those whose
        name starts with `LGSP_UPSTREAM_SECRET_`, and those listed in
        `LGSP_UPSTREAM_SECRET_ENVS` -- never a setting of the gateway itself."""
        if name in self._settings_envs:
            return f"{name} is a setting of the gateway, not an upstream's secret."
        if name.startswith(SECRET_ENV_PREFIX) or name in self.secret_envs:
            return None
        return (
            f"{name} is not declared as an upstream secret: name it {SECRET_ENV_PREFIX}..., "
            f"or add it to {SECRET_ENVS_SETTING} (it is {json.dumps(sorted(self.secret_envs))})."
        )

    # -- addresses ------------------------------------------------------------------------

    def allows(self, ip: IPAddress) -> bool:
        """Whether the gateway may connect to `ip` (run for each new upstream connection)."""
        if isinstance(ip, IPv6Address):
            v4 = unwrap(ip)
            if isinstance(v4, IPv4Address):
                # NAT64 may be allowed by its own IPv6 CIDR; IPv4-mapped never is.
                if ip.ipv4_mapped is None and any(ip in n for n in self._v6):
                    return True
                return self.allows(v4)
            if any(ip in n for n in self._v6):
                return True
            if ip in METADATA:  # fd00:ec2::254 is in fc00::/7, yet never "private"
                return False
            if any(ip in n for n in self._named_v6):
                return True
        else:
            if any(ip in n for n in self._v4):
                return True
            if any(ip in n for n in self._named_v4):
                return True
        return self._public and is_public(ip)

    def advice(self, refused: Iterable[IPAddress]) -> str:
        """What to set so that `refused` would be allowed, naming the setting."""
        current = json.dumps(self.networks)
        refused = [unwrap(ip) for ip in refused]
        if any(ip in METADATA for ip in refused):
            return (
                "That is the cloud metadata service, which hands out the server's own "
                "credentials: the upstream's address is wrong (or hostile); correct it. "
                f"({NETWORKS_SETTING} is {current}.)"
            )
        additions: list[str] = []
        special = False
        for ip in refused:
            kind = describe(ip)
            if kind in NAMED:
                add = kind
            else:
                add, special = host_network(ip), True
            if add not in additions and add not in self.networks:
                additions.append(add)
        if not additions:
            return f"{NETWORKS_SETTING} is {current}."
        wanted = json.dumps([*self.networks, *additions])
        warning = (
            " Link-local, multicast and reserved addresses are refused on purpose: allow one"
            " only if it really is the provider's system."
            if special
            else ""
        )
        return (
            f"If the provider's system really is there, set {NETWORKS_SETTING}='{wanted}'"
            f" (it is {current}).{warning}"
        )

    def address_refusal(self, host: str, refused: Sequence[IPAddress]) -> str:
        """The message for a host name whose addresses are all refused."""
        listed = ", ".join(f"{ip} ({describe(ip)})" for ip in refused)
        return (
            f"{host} resolves only to addresses outside the networks this gateway may call: "
            f"{listed or 'none it can judge'}. {self.advice(refused)}"
        )

    # -- URLs -----------------------------------------------------------------------------

    def refusal(self, scheme: str, host: str | None) -> str | None:
        """Why a URL with this scheme and host may not be called, or None if it may.

        Host names pass here: their addresses are judged when they are resolved."""
        key = (scheme, host)
        try:
            return self._decisions[key]
        except KeyError:
            pass
        reason = self._judge(scheme, host)
        if len(self._decisions) >= 4096:
            self._decisions.clear()
        self._decisions[key] = reason
        return reason

    def _judge(self, scheme: str, host: str | None) -> str | None:
        scheme = scheme.lower()
        if scheme not in self.schemes:
            return (
                f"the scheme {scheme or '(none)'!r} is not allowed; {SCHEMES_SETTING} is "
                f"{json.dumps(self.schemes)}."
            )
        if not host:
            return "the URL has no host."
        try:
            ip = ip_address(host)
        except ValueError:
            numeric = numeric_ipv4(host)
            if numeric is not None:
                return (
                    f"{host!r} is a non-standard way of writing the IPv4 address {numeric};"
                    " write addresses in dotted form (a.b.c.d)."
                )
            return None  # a name: judged when resolved
        if self.allows(ip):
            return None
        return (
            f"{ip} ({describe(ip)}) is outside the networks this gateway may call. "
            f"{self.advice([ip])}"
        )

    def check_url(self, url: str) -> None:
        """Refuse `url` (absolute) if its scheme, or its host when that is an IP literal,
        is outside the allow-list. Raises `OutboundRefused` saying what to change."""
        try:
            parsed = URL(url)
        except (ValueError, TypeError) as e:
            raise OutboundRefused(f"Upstream URL {url!r} is not a valid URL: {e}") from None
        reason = self.refusal(parsed.scheme, parsed.host)
        if reason is not None:
            shown = parsed.with_query(None).with_fragment(None)
            if shown.raw_user is not None or shown.raw_password is not None:
                shown = shown.with_user(None)  # never repeat credentials
            raise OutboundRefused(f"Upstream URL {str(shown)!r} is refused: {reason}")


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, keeping only the addresses the policy allows.

    The connector caches what this returns (its DNS cache), so the filter runs once per
    name and cache period, not per request. IP literals never reach a resolver: aiohttp
    connects to them directly, so `OutboundPolicy.refusal` covers them before sending."""

    def __init__(self, policy: OutboundPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not results:
            return results
        kept: list[ResolveResult] = []
        refused: list[IPAddress] = []
        for result in results:
            try:
                ip = ip_address(result["host"])
            except ValueError:
                continue  # not an address we can judge: never connect to it
            if self.policy.allows(ip):
                kept.append(result)
            else:
                refused.append(ip)
        if not kept:
            raise AddressRefused(host, refused, self.policy.address_refusal(host, refused))
        return kept

    async def close(self) -> None:
        await self._inner.close()


def address_refused(error: BaseException) -> AddressRefused | None:
    """The outbound policy's refusal inside an aiohttp connection error, if it is one."""
    if isinstance(error, aiohttp.ClientConnectorError) and isinstance(
        error.os_error, AddressRefused
    ):
        return error.os_error
    return None


def refused_problem(what: str, reason: str) -> Problem:
    log.warning("upstream address refused", target=what, reason=reason)
    return Problem(UPSTREAM_ADDRESS_REFUSED, f"The gateway may not call {what}: {reason}")
