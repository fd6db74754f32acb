"""Unit tests of the signing key store (gateway/identity/keys.py) with the token service on top.

No database and no server: a key directory under tmp_path. `gateway.identity.keys` reads the time
through a `Clock` the tests move by hand, so key ids (which start with their creation time
to the second) and the reload rate limit behave the same on any machine, at any speed.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from types import SimpleNamespace

import jwt
import pytest

import gateway.identity.keys as keys_module
from gateway.core.problems import INVALID_TOKEN, Problem
from gateway.identity.directory import ClientEntry
from gateway.identity.keys import KeyStore
from gateway.identity.tokens import TokenService

ISSUER = "http://gateway.test"
CLIENT = ClientEntry(
    code="motcua",
    name="Một cửa",
    agency_code="000.00.31.H49",
    enabled=True,
    groups=frozenset({"tthc"}),
)
CREDENTIAL_ID = 7


class Clock:
    """The time as gateway.identity.keys sees it: a fixed instant that moves only when told to."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, 0, 500_000, tzinfo=UTC)
        self.monotonic = 1_000.0
        clock = self

        class ClockDatetime(datetime):
            @classmethod
            def now(cls, tz: tzinfo | None = None) -> ClockDatetime:
                return cls.fromtimestamp(clock.now.timestamp(), tz)

        monkeypatch.setattr(keys_module, "datetime", ClockDatetime)
        monkeypatch.setattr(keys_module, "time", SimpleNamespace(monotonic=lambda: clock.monotonic))

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.monotonic += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    return tmp_path / "var" / "keys"


def tokens(store: KeyStore, alg: str = "EdDSA") -> TokenService:
    """A token service over `store`; a new one has an empty verification cache."""
    return TokenService(
        store,
        issuer=ISSUER,
        audience=ISSUER,
        ttl_seconds=300,
        algorithms=[alg],
        leeway_seconds=30,
    )


def pem_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.pem"))


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


# -- first start ------------------------------------------------------------------------------


def test_first_load_generates_one_key(key_dir: Path, clock: Clock) -> None:
    store = KeyStore(key_dir, None)
    store.load()

    [pem] = pem_files(key_dir)
    assert pem.stem == store.active.kid
    assert store.active.alg == "EdDSA"
    assert store.active.kid.startswith("20300101T120000500000Z-")  # UTC, to the microsecond
    assert [k["kid"] for k in store.jwks()["keys"]] == [store.active.kid]
    assert not list(key_dir.glob("*.tmp"))

    # Loading again (a restart) keeps that key rather than making another.
    again = KeyStore(key_dir, None)
    again.load()
    assert again.active.kid == store.active.kid
    assert len(pem_files(key_dir)) == 1


def test_key_file_and_directory_are_private(key_dir: Path) -> None:
    store = KeyStore(key_dir, None)
    store.load()
    [pem] = pem_files(key_dir)
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    assert pem.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_token_round_trip(key_dir: Path) -> None:
    store = KeyStore(key_dir, None)
    store.load()
    service = tokens(store)
    token, ttl = service.issue(CLIENT, CREDENTIAL_ID)
    assert ttl == 300
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    assert kid_of(token) == store.active.kid
    claims = service.verify(token)
    assert (claims.client, claims.credential_id) == ("motcua", CREDENTIAL_ID)


# -- passphrase -------------------------------------------------------------------------------


def test_passphrase_encrypts_key_at_rest(key_dir: Path) -> None:
    store = KeyStore(key_dir, "correct horse battery staple")
    store.load()
    [pem] = pem_files(key_dir)
    assert pem.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600

    token, _ = tokens(store).issue(CLIENT, CREDENTIAL_ID)
    reopened = KeyStore(key_dir, "correct horse battery staple")
    reopened.load()
    assert reopened.active.kid == store.active.kid
    assert tokens(reopened).verify(token).client == "motcua"


def test_wrong_passphrase_does_not_load(key_dir: Path) -> None:
    KeyStore(key_dir, "correct horse battery staple").load()
    with pytest.raises(ValueError, match=r"(?i)password|decrypt"):
        KeyStore(key_dir, "wrong passphrase").load()
    with pytest.raises(TypeError, match=r"(?i)encrypted"):
        KeyStore(key_dir, None).load()
    # Failing to load must not generate a replacement key next to the real one.
    assert len(pem_files(key_dir)) == 1


# -- rotation ---------------------------------------------------------------------------------


def test_rotate_makes_new_active_key_and_old_still_verifies(key_dir: Path, clock: Clock) -> None:
    store = KeyStore(key_dir, None)
    store.load()
    old = store.active
    old_token, _ = tokens(store).issue(CLIENT, CREDENTIAL_ID)

    clock.advance(60)
    new = store.rotate()

    assert new.kid != old.kid
    assert store.active == new
    assert {p.stem for p in pem_files(key_dir)} == {old.kid, new.kid}
    assert [k["kid"] for k in store.jwks()["keys"]] == [old.kid, new.kid]

    new_token, _ = tokens(store).issue(CLIENT, CREDENTIAL_ID)
    assert kid_of(new_token) == new.kid
    verifier = tokens(store)
    assert verifier.verify(old_token).client == "motcua"
    assert verifier.verify(new_token).client == "motcua"


def test_rotate_with_zero_retirement_removes_superseded_keys(key_dir: Path, clock: Clock) -> None:
    store = KeyStore(key_dir, None)
    store.load()
    first = store.active
    first_token, _ = tokens(store).issue(CLIENT, CREDENTIAL_ID)
    clock.advance(60)
    second = store.rotate()
    clock.advance(60)

    third = store.rotate(retire_after_seconds=0)

    assert store.active == third
    assert [p.stem for p in pem_files(key_dir)] == [third.kid]
    assert [k["kid"] for k in store.jwks()["keys"]] == [third.kid]
    assert store.get(first.kid) is None and store.get(second.kid) is None
    with pytest.raises(Problem) as refused:
        tokens(store).verify(first_token)
    assert refused.value.ptype is INVALID_TOKEN
    assert "unknown key" in refused.value.detail


def test_rotate_keeps_keys_superseded_within_retirement_window(key_dir: Path, clock: Clock) -> None:
    store = KeyStore(key_dir, None)
    store.load()
    first = store.active
    clock.advance(60)
    second = store.rotate(retire_after_seconds=330)
    assert {p.stem for p in pem_files(key_dir)} == {first.kid, second.kid}

    clock.advance(331)  # `first` stopped signing 331 s ago, `second` only now
    third = store.rotate(retire_after_seconds=330)
    assert {p.stem for p in pem_files(key_dir)} == {second.kid, third.kid}


@pytest.fixture
def descending_suffixes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Random kid suffixes that happen to come out in descending order."""
    values: Iterator[str] = iter(f"{n:08x}" for n in range(0xFFFFFFFF, 0, -1))
    monkeypatch.setattr(keys_module, "secrets", SimpleNamespace(token_hex=lambda n: next(values)))


@pytest.mark.usefixtures("descending_suffixes")
def test_key_rotated_within_the_same_second_becomes_active(key_dir: Path, clock: Clock) -> None:
    store = KeyStore(key_dir, None)
    store.load()
    new = store.rotate()  # no clock.advance: the same second
    assert store.active == new
    token, _ = tokens(store).issue(CLIENT, CREDENTIAL_ID)
    assert kid_of(token) == new.kid


@pytest.mark.usefixtures("descending_suffixes")
def test_rotate_with_retirement_in_the_same_second_keeps_the_new_key(
    key_dir: Path, clock: Clock
) -> None:
    store = KeyStore(key_dir, None)
    store.load()
    new = store.rotate(retire_after_seconds=0)
    assert [p.stem for p in pem_files(key_dir)] == [new.kid]


# -- several replicas on one directory --------------------------------------------------------


def test_replica_verifies_token_signed_with_key_created_after_its_load(
    key_dir: Path, clock: Clock
) -> None:
    signer = KeyStore(key_dir, None)
    signer.load()
    replica = KeyStore(key_dir, None)
    replica.load()
    assert replica.active.kid == signer.active.kid

    clock.advance(60)
    new = signer.rotate()
    token, _ = tokens(signer).issue(CLIENT, CREDENTIAL_ID)
    assert kid_of(token) == new.kid
    assert replica.get(new.kid) is None

    assert tokens(replica).verify(token).client == "motcua"
    assert replica.get(new.kid) is not None
    assert new.kid in {k["kid"] for k in replica.jwks()["keys"]}


def test_unknown_kid_is_refused_after_reload(key_dir: Path, clock: Clock) -> None:
    store = KeyStore(key_dir, None)
    store.load()
    token, _ = tokens(store).issue(CLIENT, CREDENTIAL_ID)
    other_dir = key_dir.parent / "elsewhere"
    stranger = KeyStore(other_dir, None)
    clock.advance(60)
    stranger.load()
    foreign, _ = tokens(stranger).issue(CLIENT, CREDENTIAL_ID)

    with pytest.raises(Problem) as refused:
        tokens(store).verify(foreign)
    assert refused.value.ptype is INVALID_TOKEN
    assert "unknown key" in refused.value.detail
    assert tokens(store).verify(token).client == "motcua"


# -- ES256 ------------------------------------------------------------------------------------


def test_es256_store_end_to_end(key_dir: Path, clock: Clock) -> None:
    store = KeyStore(key_dir, None, alg="ES256")
    store.load()
    assert store.active.alg == "ES256"
    [jwk] = store.jwks()["keys"]
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("EC", "P-256", "ES256", "sig")
    assert "d" not in jwk

    service = tokens(store, "ES256")
    token, _ = service.issue(CLIENT, CREDENTIAL_ID)
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    claims = jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["ES256"], audience=ISSUER)
    assert claims["sub"] == "motcua"
    assert service.verify(token).client == "motcua"

    # The key type is read back from the file: a restart keeps signing ES256.
    clock.advance(60)
    reopened = KeyStore(key_dir, None, alg="ES256")
    reopened.load()
    assert reopened.active.alg == "ES256"
    assert tokens(reopened, "ES256").verify(token).credential_id == CREDENTIAL_ID
    new = reopened.rotate()
    assert new.alg == "ES256" and reopened.active == new

    # An EdDSA-only verifier does not take ES256 tokens, even from its own key store.
    with pytest.raises(Problem, match="not accepted"):
        tokens(store, "EdDSA").verify(token)
