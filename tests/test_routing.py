"""Service addresses (`gateway/exchange/routing.py`): what parses, into what, and what is refused.

The raw request target is what an attacker controls, so refusals are tested on raw
strings exactly as they would arrive on the wire (no normalisation by a client library).
"""

from __future__ import annotations

import pytest

from gateway.core.problems import INVALID_PATH, INVALID_SERVICE_ADDRESS, Problem, ProblemType
from gateway.exchange.routing import ServiceAddress, parse_service_address

P = "/r1/000.00.00.H49/echo/v1"


# -- valid addresses --------------------------------------------------------------------------

VALID: list[tuple[str, ServiceAddress]] = [
    (P, ServiceAddress("000.00.00.H49", "echo", "v1", "/", "/", "")),
    (P + "/", ServiceAddress("000.00.00.H49", "echo", "v1", "/", "/", "")),
    (P + "?a=1", ServiceAddress("000.00.00.H49", "echo", "v1", "/", "/", "a=1")),
    (
        "/r1/000.00.00.G01/csdlqg-dancu/v1/cong-dan/tra-cuu",
        ServiceAddress(
            "000.00.00.G01", "csdlqg-dancu", "v1", "/cong-dan/tra-cuu", "/cong-dan/tra-cuu", ""
        ),
    ),
    (
        P + "/a/b/c/?x=1&y=%2F&z=..",
        ServiceAddress("000.00.00.H49", "echo", "v1", "/a/b/c/", "/a/b/c/", "x=1&y=%2F&z=.."),
    ),
    # Percent-encoded characters other than the forbidden ones decode for the access check
    # and stay encoded for the upstream.
    (
        P + "/ho%20ten/Nguy%E1%BB%85n",
        ServiceAddress(
            "000.00.00.H49", "echo", "v1", "/ho ten/Nguyễn", "/ho%20ten/Nguy%E1%BB%85n", ""
        ),
    ),
    (
        P + "/publi%63/x",
        ServiceAddress("000.00.00.H49", "echo", "v1", "/public/x", "/publi%63/x", ""),
    ),
    # Dots inside a segment are not dot segments.
    (
        P + "/file.json/...",
        ServiceAddress("000.00.00.H49", "echo", "v1", "/file.json/...", "/file.json/...", ""),
    ),
    # Version with a minor part, a 35-character agency code, a 64-character service code.
    (
        "/r1/ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456/s.v_c-1/v2.10/x",
        ServiceAddress("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456", "s.v_c-1", "v2.10", "/x", "/x", ""),
    ),
    (
        "/r1/G01/" + "s" * 64 + "/v10",
        ServiceAddress("G01", "s" * 64, "v10", "/", "/", ""),
    ),
]


@pytest.mark.parametrize(("target", "expected"), VALID, ids=[t for t, _ in VALID])
def test_valid_address_parses(target: str, expected: ServiceAddress) -> None:
    address = parse_service_address(target)
    assert address == expected
    assert address.key == (expected.provider, expected.service, expected.version)


# -- refused targets --------------------------------------------------------------------------

REFUSED_PATHS: list[tuple[str, str]] = [
    # dot segments, raw and encoded in every case mix
    (P + "/public/../private", "dot"),
    (P + "/public/./x", "dot"),
    (P + "/..", "dot"),
    ("/r1/../healthz", "dot"),
    (P + "/public/%2e%2e/private", "encoded"),
    (P + "/public/%2E%2e/private", "encoded"),
    (P + "/public/.%2e/private", "encoded"),
    (P + "/public/%2e/x", "encoded"),
    # encoded separators
    (P + "/public%2F..%2Fprivate", "encoded"),
    (P + "/public%2fx", "encoded"),
    (P + "/public%5C..%5Cprivate", "encoded"),
    (P + "/public%5cx", "encoded"),
    (P + "/public\\..\\private", "backslash"),
    # NUL
    (P + "/x%00.json", "encoded"),
    # double encoding
    (P + "/public/%252e%252e/private", "encoded"),
    (P + "/public%252Fprivate", "encoded"),
    # malformed percent-encoding
    (P + "/x%zz", "malformed"),
    (P + "/x%", "malformed"),
    (P + "/x%4", "malformed"),
    (P + "/%u002e%u002e/private", "malformed"),
    # empty segments
    (P + "//x", "empty"),
    (P + "/a//b", "empty"),
    ("/r1/000.00.00.H49//v1/x", "empty"),
    ("//r1" + P[3:], "empty"),
    # control characters, raw and encoded
    (P + "/a%0ab", "control"),
    (P + "/a%0Db", "control"),
    (P + "/a%1fb", "control"),
    (P + "/a%7Fb", "control"),
    (P + "/a\tb", "control"),
    (P + "/a\x7fb", "control"),
    # absolute-form and other non-absolute-path targets
    ("http://x" + P + "/x", "absolute"),
    ("https://gateway.test" + P, "absolute"),
    ("r1/000.00.00.H49/echo/v1", "absolute"),
    ("*", "absolute"),
]

DETAIL_WORDS = {
    "dot": "Dot segments",
    "encoded": "Encoded",
    "backslash": "Backslash",
    "malformed": "malformed percent-encoding",
    "empty": "Empty path segments",
    "control": "Control characters",
    "absolute": "absolute path",
}


def _refusal(target: str) -> Problem:
    with pytest.raises(Problem) as caught:
        parse_service_address(target)
    return caught.value


@pytest.mark.parametrize(
    ("target", "cause"), REFUSED_PATHS, ids=[repr(t) for t, _ in REFUSED_PATHS]
)
def test_unsafe_path_is_refused(target: str, cause: str) -> None:
    problem = _refusal(target)
    assert problem.ptype is INVALID_PATH
    assert problem.status == 400
    assert DETAIL_WORDS[cause] in problem.detail


REFUSED_ADDRESSES: list[tuple[str, str]] = [
    # not under /r1/
    ("/", "/r1/"),
    ("/r2/000.00.00.H49/echo/v1", "/r1/"),
    ("/R1/000.00.00.H49/echo/v1", "/r1/"),
    ("/r1", "/r1/"),
    # too few parts
    ("/r1/", "/r1/{provider"),
    ("/r1/000.00.00.H49", "/r1/{provider"),
    ("/r1/000.00.00.H49/echo", "/r1/{provider"),
    ("/r1/000.00.00.H49/echo/", "/r1/{provider"),
    # agency codes
    ("/r1/000.00.00.h49/echo/v1", "not an agency code"),
    ("/r1/" + "A" * 36 + "/echo/v1", "not an agency code"),
    ("/r1/000.00.00.H49./echo/v1", "not an agency code"),
    ("/r1/.000.00.00.H49/echo/v1", "not an agency code"),
    ("/r1/000..00.H49/echo/v1", "not an agency code"),
    ("/r1/000-00-00-H49/echo/v1", "not an agency code"),
    ("/r1/000.00.00.H4%39/echo/v1", "not an agency code"),
    # service codes
    ("/r1/000.00.00.H49/Echo/v1", "not a valid service code"),
    ("/r1/000.00.00.H49/-echo/v1", "not a valid service code"),
    ("/r1/000.00.00.H49/_echo/v1", "not a valid service code"),
    ("/r1/000.00.00.H49/.echo/v1", "not a valid service code"),
    ("/r1/000.00.00.H49/" + "s" * 65 + "/v1", "not a valid service code"),
    ("/r1/000.00.00.H49/ec~ho/v1", "not a valid service code"),
    ("/r1/000.00.00.H49/ec%20ho/v1", "not a valid service code"),
    # versions
    ("/r1/000.00.00.H49/echo/1", "not a service version"),
    ("/r1/000.00.00.H49/echo/V1", "not a service version"),
    ("/r1/000.00.00.H49/echo/v", "not a service version"),
    ("/r1/000.00.00.H49/echo/v1.", "not a service version"),
    ("/r1/000.00.00.H49/echo/v1.2.3", "not a service version"),
    ("/r1/000.00.00.H49/echo/version1", "not a service version"),
    ("/r1/000.00.00.H49/echo/latest/x", "not a service version"),
]


@pytest.mark.parametrize(
    ("target", "detail"), REFUSED_ADDRESSES, ids=[t for t, _ in REFUSED_ADDRESSES]
)
def test_malformed_service_address_is_refused(target: str, detail: str) -> None:
    problem = _refusal(target)
    assert problem.ptype is INVALID_SERVICE_ADDRESS
    assert problem.status == 400
    assert detail in problem.detail


@pytest.mark.parametrize(
    ("target", "ptype"),
    [
        # The raw-path check runs first: a traversal in a malformed address is a path problem.
        ("/r2/../r1/000.00.00.H49/echo/v1", INVALID_PATH),
        ("/r1/000.00.00.h49/echo/v1/%2e%2e", INVALID_PATH),
        # The query is not part of the path: what it holds is the upstream's business.
        ("/r1/000.00.00.h49/echo/v1?p=../..", INVALID_SERVICE_ADDRESS),
    ],
)
def test_path_check_precedes_address_check(target: str, ptype: ProblemType) -> None:
    assert _refusal(target).ptype is ptype
