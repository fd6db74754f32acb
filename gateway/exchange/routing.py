"""Service addresses: `/r1/{provider}/{service}/{version}/{endpoint path}`.

Modelled on X-Road's `/r1/{instance}/{class}/{member}/{subsystem}/{service}`: the provider
is named by its official agency code, so an address says who answers it. The raw request
target is checked before anything else, because an encoded path traversal once let
requests past X-Road's access check (docs/domain.md §6): encoded separators, dot segments,
empty segments, double encoding and control characters are refused, not "fixed".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from gateway.core.identifiers import AGENCY_CODE_RE, SERVICE_CODE_RE, VERSION_RE
from gateway.core.problems import INVALID_PATH, INVALID_SERVICE_ADDRESS, Problem

PREFIX = "/r1/"


# Encoded "/", "\", NUL, "." and "%" (double encoding): none has an innocent use in a
# service path, and each has been used to make a path mean one thing to the access check
# and another to the upstream.
_FORBIDDEN_ENCODINGS = re.compile(r"%(?:2[fFeE5]|5[cC]|00|3[bB])")
# RFC 3986 path characters: unreserved, percent-encoded, sub-delims, ":" and "@", with "/"
# between segments; but not ";" (servlet containers read "/..;/" as "/../", so a path
# parameter could carry a traversal past the access check). Anything else ("#", which
# the upstream URL would cut off as a fragment, "[", "|", "^", "{"...) means something
# else, or nothing, to the provider's server than to the access check.
_PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,=:@/%]*")
_MALFORMED_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class ServiceAddress:
    provider: str
    service: str
    version: str
    # Decoded endpoint path, always starting with "/": what access rights match against.
    endpoint: str
    # The same path as received (still percent-encoded): what is forwarded upstream.
    raw_endpoint: str
    query: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.provider, self.service, self.version)


def split_target(raw_target: str) -> tuple[str, str]:
    path, _sep, query = raw_target.partition("?")
    return path, query


def check_raw_path(raw_path: str) -> None:
    """Refuse a request target whose meaning could differ between gateway and upstream."""
    if not raw_path.startswith("/"):
        raise Problem(INVALID_PATH, "The request target must be an absolute path.")
    if "\\" in raw_path:
        raise Problem(INVALID_PATH, "Backslashes are not allowed in the path.")
    if _CONTROL.search(raw_path):
        raise Problem(INVALID_PATH, "Control characters are not allowed in the path.")
    if not _PATH_CHARS.fullmatch(raw_path):
        bad = next(c for c in raw_path if not _PATH_CHARS.fullmatch(c))
        raise Problem(
            INVALID_PATH,
            f"{bad!r} is not allowed in the path: send only RFC 3986 path characters "
            "(letters, digits, -._~!$&'()*+,=:@ and percent-encodings; not ';' or '#').",
        )
    if _FORBIDDEN_ENCODINGS.search(raw_path):
        raise Problem(
            INVALID_PATH,
            "Encoded '/', '\\', '.', '%', ';' or NUL characters are not allowed in the path.",
        )
    if _MALFORMED_PERCENT.search(raw_path):
        raise Problem(INVALID_PATH, "The path contains a malformed percent-encoding.")
    segments = raw_path.split("/")[1:]
    for i, seg in enumerate(segments):
        if seg in (".", ".."):
            raise Problem(INVALID_PATH, "Dot segments ('.' and '..') are not allowed in the path.")
        if seg == "" and i != len(segments) - 1:
            raise Problem(INVALID_PATH, "Empty path segments ('//') are not allowed.")
    if _CONTROL.search(unquote(raw_path)):
        raise Problem(INVALID_PATH, "Control characters are not allowed in the path.")


def parse_service_address(raw_target: str) -> ServiceAddress:
    raw_path, query = split_target(raw_target)
    check_raw_path(raw_path)
    if "#" in query:
        # The upstream URL would end at it: what is audited must be what is forwarded.
        raise Problem(INVALID_PATH, "'#' is not allowed in the query: percent-encode it (%23).")
    if not raw_path.startswith(PREFIX):
        raise Problem(INVALID_SERVICE_ADDRESS, "Service addresses start with /r1/.")
    parts = raw_path[len(PREFIX) :].split("/", 3)
    if len(parts) < 3 or not all(parts[:3]):
        raise Problem(
            INVALID_SERVICE_ADDRESS,
            "A service address is /r1/{provider agency code}/{service code}/{version}/...;"
            f" got {raw_path!r}.",
        )
    provider, service, version = parts[0], parts[1], parts[2]
    if len(provider) > 35 or not AGENCY_CODE_RE.match(provider):
        raise Problem(
            INVALID_SERVICE_ADDRESS,
            f"{provider!r} is not an agency code (digits and capital letters in dot-separated"
            " groups, at most 35 characters).",
        )
    if not SERVICE_CODE_RE.match(service):
        raise Problem(INVALID_SERVICE_ADDRESS, f"{service!r} is not a valid service code.")
    if not VERSION_RE.match(version):
        raise Problem(
            INVALID_SERVICE_ADDRESS, f"{version!r} is not a service version such as 'v1'."
        )
    raw_endpoint = "/" + parts[3] if len(parts) == 4 else "/"
    return ServiceAddress(
        provider=provider,
        service=service,
        version=version,
        endpoint=unquote(raw_endpoint),
        raw_endpoint=raw_endpoint,
        query=query,
    )
