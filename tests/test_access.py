"""Access rules (`gateway/identity/access.py`): path globs, methods, deny by default."""

from __future__ import annotations

import pytest

from gateway.identity.access import HTTP_METHODS, Rule, compile_glob, is_allowed

# (glob, endpoint, matches)
GLOBS: list[tuple[str, str, bool]] = [
    # the whole service
    ("/**", "/", True),
    ("/**", "/a", True),
    ("/**", "/a/b/c", True),
    ("/**", "/cong-dan/tra-cuu-ho-ten", True),
    # a literal path is exact
    ("/cong-dan/tra-cuu", "/cong-dan/tra-cuu", True),
    ("/cong-dan/tra-cuu", "/cong-dan/tra-cuu-ho-ten", False),
    ("/cong-dan/tra-cuu", "/cong-dan/tra-cuu/", False),
    ("/cong-dan/tra-cuu", "/cong-dan", False),
    ("/cong-dan/tra-cuu", "/x/cong-dan/tra-cuu", False),
    ("/a", "/A", False),
    # `*` stays within one segment
    ("/a/*", "/a/b", True),
    ("/a/*", "/a/", True),
    ("/a/*", "/a", False),
    ("/a/*", "/a/b/c", False),
    ("/a/*/c", "/a/b/c", True),
    ("/a/*/c", "/a/b/x/c", False),
    ("/a/x*", "/a/xyz", True),
    ("/a/x*", "/a/yx", False),
    ("/a/x*", "/a/x/y", False),
    # `/**` at the end crosses segments and matches the prefix itself
    ("/a/**", "/a", True),
    ("/a/**", "/a/", True),
    ("/a/**", "/a/b", True),
    ("/a/**", "/a/b/c", True),
    ("/a/**", "/ab", False),
    ("/a/**", "/ab/c", False),
    ("/a/**", "/", False),
    ("/a/**", "/b/a", False),
    # `/**/` in the middle: zero or more segments
    ("/a/**/z", "/a/z", True),
    ("/a/**/z", "/a/b/z", True),
    ("/a/**/z", "/a/b/c/z", True),
    ("/a/**/z", "/a/bz", False),
    ("/a/**/z", "/az", False),
    ("/a/**/z", "/a/z/y", False),
    ("/a/**/z", "/ax/z", False),
    # `**` inside a segment crosses segments too
    ("/a/**.json", "/a/b/c.json", True),
    ("/a/**.json", "/a/b/c.xml", False),
    # regex metacharacters are literal
    ("/a.b", "/a.b", True),
    ("/a.b", "/axb", False),
    ("/a+b", "/a+b", True),
    ("/a+b", "/aab", False),
    ("/a(b", "/a(b", True),
    ("/a(b)", "/ab", False),
    ("/a[bc]", "/ab", False),
    ("/a[bc]", "/a[bc]", True),
    ("/a?", "/a?", True),
    ("/a?", "/a", False),
    ("/a$", "/a$", True),
    ("/a$", "/a", False),
    ("/a|/b", "/b", False),
    ("/^a", "/^a", True),
    ("/a\\d", "/a5", False),
    ("/*.json", "/x.json", True),
    ("/*.json", "/xjson", False),
]


@pytest.mark.parametrize(("glob", "endpoint", "matches"), GLOBS)
def test_path_glob(glob: str, endpoint: str, matches: bool) -> None:
    rule = Rule.compile("*", glob)
    assert rule.allows("GET", endpoint) is matches
    assert is_allowed((rule,), "GET", endpoint) is matches


def test_whole_service_glob_needs_no_regex() -> None:
    assert compile_glob("/**") is None
    assert Rule.compile("*", "/**").path is None


@pytest.mark.parametrize("glob", ["a/b", "**", "*", "", "cong-dan/*"])
def test_glob_must_start_with_slash(glob: str) -> None:
    with pytest.raises(ValueError, match="must start with '/'"):
        compile_glob(glob)
    with pytest.raises(ValueError, match="must start with '/'"):
        Rule.compile("GET", glob)


# (rule method, request method, allowed)
METHODS: list[tuple[str, str, bool]] = [
    ("*", "GET", True),
    ("*", "POST", True),
    ("*", "DELETE", True),
    ("*", "OPTIONS", True),
    ("GET", "GET", True),
    ("GET", "POST", False),
    ("GET", "HEAD", False),
    ("POST", "POST", True),
    ("POST", "PUT", False),
    ("get", "GET", True),  # method names in policy files are case-insensitive
    ("Delete", "DELETE", True),
]


@pytest.mark.parametrize(("rule_method", "method", "allowed"), METHODS)
def test_method(rule_method: str, method: str, allowed: bool) -> None:
    assert Rule.compile(rule_method, "/**").allows(method, "/x") is allowed


def test_rule_needs_method_and_path() -> None:
    rule = Rule.compile("GET", "/public/**")
    assert rule.allows("GET", "/public/x")
    assert not rule.allows("POST", "/public/x")
    assert not rule.allows("GET", "/private")


@pytest.mark.parametrize("method", ["FOO", "CONNECT", "TRACE", "GET ", "", "G*"])
def test_unknown_method_is_rejected(method: str) -> None:
    with pytest.raises(ValueError, match="unknown HTTP method"):
        Rule.compile(method, "/**")


def test_known_methods_compile() -> None:
    for method in HTTP_METHODS:
        assert Rule.compile(method, "/**").methods == frozenset({method})
    assert Rule.compile("*", "/**").methods is None


@pytest.mark.parametrize(("method", "endpoint"), [("GET", "/"), ("POST", "/a/b"), ("*", "/**")])
def test_no_rules_deny(method: str, endpoint: str) -> None:
    assert is_allowed((), method, endpoint) is False


def test_any_rule_may_grant() -> None:
    rules = (Rule.compile("GET", "/public/**"), Rule.compile("POST", "/forms/*"))
    assert is_allowed(rules, "GET", "/public/a/b")
    assert is_allowed(rules, "POST", "/forms/x")
    assert not is_allowed(rules, "POST", "/public/a")
    assert not is_allowed(rules, "GET", "/forms/x")
    assert not is_allowed(rules, "POST", "/forms/x/y")
