"""Simulator of the national side of a provincial data-sharing gateway (LGSP).

It plays the national systems as a province sees them (the population database here;
the business registry, document exchange, dossier sync and land registry in
business.py, edxml.py, dossier.py and land.py, each added by its ``setup``; the change
feeds scheduled pulls read in feeds.py):

* the national data-sharing platform (NDXP), which issues OAuth2 access tokens to
  registered provincial systems (client credentials grant, RFC 6749 §4.4), and
* the national population database (CSDLQG về dân cư), which answers citizen
  lookups by personal identification number (``SoDinhDanh``, 12 digits), old ID
  card number (``SoCMND``, 9 digits), or full name plus date of birth.

Requests and answers use the national field names published by provinces
(``MaYeuCau``, ``MaDVC``, ``MaTichHop``, ``MaDonVi``, ``MaCanBo``...). A lookup has
three outcomes: found, not found, and "exists but you may not see it".

Error codes (``MaLoi``): ``"0"`` success, ``"100"`` authentication error, ``"201"``
record not found and ``"400"`` invalid request follow what provincial platforms
publish; ``"202"`` (the citizen exists but the requesting agency may not see the
record, marked ``"HanChe": true`` in the data) is this simulator's own convention.

The citizens in ``data/citizens.json`` are fictional; administrative unit codes are
illustrative and follow the 2025 reform (province and commune, no district level).

Test helpers under ``/_sim/`` need no token: ``/_sim/delay/{ms}``,
``/_sim/status/{code}`` and ``/_sim/echo/...``. The platform also issues tokens of its
own to call provinces' services (simulator/national_issuer.py: its JWKS and
``/_sim/call-in``), and plays provincial providers (simulator/provincial.py). Tests read
``app[TOKENS_ISSUED]`` (tokens issued so far) and ``app[LOOKUPS]`` (what each lookup
request carried).
"""

import argparse
import asyncio
import base64
import binascii
import hmac
import importlib.resources
import os
import re
import secrets
import time
import unicodedata
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import unquote_plus

import orjson
from aiohttp import web

from simulator import (
    business,
    dossier,
    edxml,
    feeds,
    land,
    national_issuer,
    provincial,
    relay,
    witness,
)

TOKENS_ISSUED: web.AppKey[int] = web.AppKey("tokens_issued", int)
"""Number of access tokens issued since the app was created."""

LOOKUPS: web.AppKey[list[dict[str, Any]]] = web.AppKey("lookups", list)
"""One ``{"headers": {...}, "body": ...}`` entry per population lookup received."""

RECORDED_HEADERS = (
    "X-Request-Id",
    "traceparent",
    "X-Officer-Id",
    "X-Procedure-Code",
    "X-Case-Number",
    "X-Client-Id",
    "X-Client-Agency",
    "Authorization",
    "Connection",
    "Keep-Alive",
    "Proxy-Authorization",
    "TE",
    "Upgrade",
    "X-Api-Key",
)
"""Incoming headers kept in ``app[LOOKUPS]`` so tests can see what was forwarded."""

MAX_DELAY_MS = 300_000

_MAX_LENGTHS = {
    "MaYeuCau": 40,
    "MaDVC": 20,
    "MaTichHop": 20,
    "MaDonVi": 35,
    "MaCanBo": 20,
    "HoVaTen": 100,
}
# Accountability fields the gateway may send as headers instead of in the body.
_HEADER_FALLBACK = {
    "MaYeuCau": "X-Request-Id",
    "MaDonVi": "X-Client-Agency",
    "MaCanBo": "X-Officer-Id",
    "MaDVC": "X-Procedure-Code",
}
_DIGITS = re.compile(r"[0-9]+")
_YEAR = re.compile(r"[0-9]{4}")
_FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

_MSG_OK = "Thành công"
_MSG_UNAUTHENTICATED = "Lỗi xác thực: access token không hợp lệ hoặc đã hết hạn"
_MSG_NOT_FOUND = "Không tìm thấy thông tin công dân"
_MSG_RESTRICTED = "Công dân có tồn tại nhưng đơn vị không được phép khai thác thông tin"


@dataclass
class _State:
    clients: dict[str, str]
    token_ttl: int
    citizens: list[dict[str, Any]]
    tokens: dict[str, float] = field(default_factory=dict)  # token -> monotonic expiry


_STATE = web.AppKey("state", _State)


class _InvalidRequest(Exception):
    """A lookup request breaks a field rule; the message names the field."""


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


def _load_citizens() -> list[dict[str, Any]]:
    raw = importlib.resources.files("simulator").joinpath("data/citizens.json").read_bytes()
    citizens = orjson.loads(raw)
    if not isinstance(citizens, list):
        raise ValueError("simulator/data/citizens.json must hold a JSON list")
    return citizens


# --- OAuth2 token endpoint ------------------------------------------------------------


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, param = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(param.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


def _client_is_known(clients: Mapping[str, str], client_id: str, secret: str) -> bool:
    expected = clients.get(client_id)
    # Compare against something even for unknown ids, so timing says little.
    ok = hmac.compare_digest((expected or "\0").encode(), secret.encode())
    return expected is not None and ok


async def _issue_token(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    form = await request.post()
    form_id, form_secret = form.get("client_id"), form.get("client_secret")
    auth_header = request.headers.get("Authorization")
    basic = _basic_credentials(auth_header) if auth_header else None
    no_store = {"Cache-Control": "no-store", "Pragma": "no-cache"}

    if auth_header is not None and form_secret is not None:
        # RFC 6749 §2.3: a client must not use more than one authentication method.
        return _json({"error": "invalid_request"}, 400, no_store)
    authenticated = False
    if basic is not None:
        # RFC 6749 §2.3.1 form-encodes id and secret before Basic; accept both forms.
        authenticated = _client_is_known(state.clients, *basic) or _client_is_known(
            state.clients, unquote_plus(basic[0]), unquote_plus(basic[1])
        )
    elif auth_header is None and isinstance(form_id, str) and isinstance(form_secret, str):
        authenticated = _client_is_known(state.clients, form_id, form_secret)
    if not authenticated:
        headers = dict(no_store)
        if auth_header is not None:
            headers["WWW-Authenticate"] = 'Basic realm="ndxp"'
        return _json({"error": "invalid_client"}, 401, headers)

    grant_type = form.get("grant_type")
    if grant_type is None:
        return _json({"error": "invalid_request"}, 400, no_store)
    if grant_type != "client_credentials":
        return _json({"error": "unsupported_grant_type"}, 400, no_store)

    now = time.monotonic()
    state.tokens = {tok: exp for tok, exp in state.tokens.items() if exp > now}
    token = secrets.token_urlsafe(32)
    state.tokens[token] = now + state.token_ttl
    with warnings.catch_warnings():
        # The counter is a plain int in app state by contract; aiohttp's warning about
        # changing a started app concerns its configuration, not counters like this.
        warnings.simplefilter("ignore", DeprecationWarning)
        request.app[TOKENS_ISSUED] += 1
    body = {"access_token": token, "token_type": "Bearer", "expires_in": state.token_ttl}
    return _json(body, 200, no_store)


def _has_valid_token(request: web.Request) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    expiry = request.app[_STATE].tokens.get(token.strip())
    return expiry is not None and time.monotonic() < expiry


# --- Population lookups ---------------------------------------------------------------


def _text_field(body: Mapping[str, Any], headers: Mapping[str, str], name: str) -> str | None:
    """The field's value from the body (or its fallback header), checked for length."""
    value = body.get(name)
    if value is None or value == "":
        header = _HEADER_FALLBACK.get(name)
        value = headers.get(header) if header else None
    if value is None:
        return None
    if not isinstance(value, str):
        raise _InvalidRequest(f"Trường {name} phải là chuỗi ký tự")
    if not value.strip():
        return None
    limit = _MAX_LENGTHS.get(name)
    if limit is not None and len(value) > limit:
        raise _InvalidRequest(f"Trường {name} vượt quá độ dài tối đa {limit} ký tự")
    return value


def _required(body: Mapping[str, Any], headers: Mapping[str, str], name: str) -> str:
    value = _text_field(body, headers, name)
    if value is None:
        raise _InvalidRequest(f"Thiếu trường bắt buộc {name}")
    return value


def _digits(body: Mapping[str, Any], name: str, length: int) -> str | None:
    value = _text_field(body, {}, name)
    if value is not None and (len(value) != length or not _DIGITS.fullmatch(value)):
        raise _InvalidRequest(f"Trường {name} phải gồm đúng {length} chữ số")
    return value


def _check_accountability(body: Mapping[str, Any], headers: Mapping[str, str]) -> None:
    """Check who asks and why: request id, procedure, integration code, agency, officer."""
    _text_field(body, headers, "MaYeuCau")
    _required(body, headers, "MaDVC")
    integration = _text_field(body, headers, "MaTichHop")
    if integration is not None and not _DIGITS.fullmatch(integration):
        raise _InvalidRequest("Trường MaTichHop chỉ được gồm chữ số")
    _required(body, headers, "MaDonVi")
    _required(body, headers, "MaCanBo")


def _birth_date(body: Mapping[str, Any]) -> str:
    value = _required(body, {}, "NgayThangNamSinh")
    valid = _YEAR.fullmatch(value) is not None
    if _FULL_DATE.fullmatch(value):
        try:
            date.fromisoformat(value)
            valid = True
        except ValueError:
            valid = False
    if not valid:
        raise _InvalidRequest("Trường NgayThangNamSinh phải có dạng yyyy-mm-dd hoặc yyyy")
    return value


def _normalise_name(name: str) -> str:
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())
    return " ".join(folded.split())


def _full_name(citizen: Mapping[str, Any]) -> str:
    parts = (citizen.get("Ho"), citizen.get("ChuDem"), citizen.get("Ten"))
    return " ".join(part for part in parts if part)


def _birth_matches(asked: str, recorded: str) -> bool:
    """A year matches any date in it; a record known only by year matches its year."""
    if len(asked) == 4 or len(recorded) == 4:
        return asked[:4] == recorded[:4]
    return asked == recorded


def _public(citizen: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in citizen.items() if key != "HanChe"}


def _request_id(body: Any, headers: Mapping[str, str]) -> str | None:
    value = body.get("MaYeuCau") if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        value = headers.get("X-Request-Id")
    return value


async def _receive_lookup(request: web.Request) -> Any:
    """Parse the JSON body (``None`` if it is not JSON) and record the lookup."""
    raw = await request.read()
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    headers = {name: request.headers[name] for name in RECORDED_HEADERS if name in request.headers}
    request.app[LOOKUPS].append({"headers": headers, "body": body})
    return body


async def _lookup(request: web.Request, by_name: bool) -> web.Response:
    body = await _receive_lookup(request)
    request_id = _request_id(body, request.headers)
    if not _has_valid_token(request):
        return _json(
            {"MaYeuCau": request_id, "MaLoi": "100", "MoTaLoi": _MSG_UNAUTHENTICATED},
            401,
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    try:
        if not isinstance(body, dict):
            raise _InvalidRequest("Dữ liệu yêu cầu phải là một đối tượng JSON")
        _check_accountability(body, request.headers)
        citizens = request.app[_STATE].citizens
        if by_name:
            name = _normalise_name(_required(body, {}, "HoVaTen"))
            born = _birth_date(body)
            matches = [
                c
                for c in citizens
                if _normalise_name(_full_name(c)) == name
                and _birth_matches(born, str(c.get("NgayThangNamSinh", "")))
            ]
        else:
            pin = _digits(body, "SoDinhDanh", 12)
            old_id = _digits(body, "SoCMND", 9)
            if pin is None and old_id is None:
                raise _InvalidRequest("Phải có trường SoDinhDanh hoặc SoCMND")
            matches = [
                c
                for c in citizens
                if (pin is None or c.get("SoDinhDanh") == pin)
                and (old_id is None or c.get("SoCMND") == old_id)
            ]
    except _InvalidRequest as exc:
        return _json({"MaYeuCau": request_id, "MaLoi": "400", "MoTaLoi": str(exc)}, 400)

    if not matches:
        return _json({"MaYeuCau": request_id, "MaLoi": "201", "MoTaLoi": _MSG_NOT_FOUND}, 404)
    visible = [_public(c) for c in matches if not c.get("HanChe")]
    if not visible:
        return _json({"MaYeuCau": request_id, "MaLoi": "202", "MoTaLoi": _MSG_RESTRICTED}, 403)
    answer: dict[str, Any] = {"MaYeuCau": request_id, "MaLoi": "0", "MoTaLoi": _MSG_OK}
    if by_name:
        answer["DanhSachCongDan"] = visible
    else:
        answer["CongDan"] = visible[0]
    return _json(answer)


async def _lookup_by_number(request: web.Request) -> web.Response:
    return await _lookup(request, by_name=False)


async def _lookup_by_name(request: web.Request) -> web.Response:
    return await _lookup(request, by_name=True)


# --- Health and test helpers ----------------------------------------------------------


async def _healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def _delay(request: web.Request) -> web.Response:
    ms = int(request.match_info["ms"])
    if ms > MAX_DELAY_MS:
        return _json({"error": f"delay above {MAX_DELAY_MS} ms"}, 400)
    await asyncio.sleep(ms / 1000)
    return _json({"ok": True})


async def _status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    if not 200 <= code <= 599:
        return _json({"error": "status must be between 200 and 599"}, 400)
    if code in (204, 205, 304):  # these answers carry no body
        return web.Response(status=code)
    return _json({"MaLoi": str(code)}, code)


async def _echo(request: web.Request) -> web.Response:
    raw = await request.read()
    path, _, query = request.raw_path.partition("?")
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = str(name)  # header names are multidict.istr, which orjson will not take as keys
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return _json(
        {
            "method": request.method,
            "path": path,
            "query": query,
            "headers": headers,
            "body": raw.decode("utf-8", errors="replace"),
        }
    )


def create_app(
    clients: dict[str, str], *, token_ttl: int = 300, witness_logs: list[str] | None = None
) -> web.Application:
    """Build the simulator; ``clients`` maps each allowed client_id to its secret,
    ``witness_logs`` lists the provincial audit logs (verifier keys) it witnesses."""
    app = web.Application()
    app[_STATE] = _State(clients=dict(clients), token_ttl=token_ttl, citizens=_load_citizens())
    app[TOKENS_ISSUED] = 0
    app[LOOKUPS] = []
    app.router.add_post("/oauth2/token", _issue_token)
    app.router.add_post("/csdldc/v1/cong-dan/tra-cuu", _lookup_by_number)
    app.router.add_post("/csdldc/v1/cong-dan/tra-cuu-ho-ten", _lookup_by_name)
    # National business registration (XML), document exchange (edXML over SOAP 1.1) and
    # the public service portal's dossier sync (JSON), behind the same bearer token.
    business.setup(app, _has_valid_token)
    edxml.setup(app, _has_valid_token)
    # Change feeds for scheduled pulls; before the dossier record's /ho-so/{maHoSo}, which
    # would otherwise take /ho-so/cap-nhat (simulator/feeds.py).
    feeds.setup(app, _has_valid_token)
    dossier.setup(app, _has_valid_token)
    land.setup(app, _has_valid_token)  # the land registry's parcel lookup (SOAP 1.1)
    # The platform as the witness of each province's audit log (no token: the protocol
    # authenticates the checkpoint's signature, not the caller).
    witness.setup(app, witness_logs)
    # The platform calling in: its own signing key and JWKS, and the provincial systems
    # (one-stop-shop, civil-status registry) a province's gateway forwards to.
    national_issuer.setup(app)
    provincial.setup(app)
    # Routing between provinces: a gateway's call to another province's service goes on
    # to that province's gateway with the platform's own token (simulator/relay.py).
    relay.setup(app, _has_valid_token)
    app.router.add_get("/healthz", _healthz)
    for method in ("GET", "POST"):
        app.router.add_route(method, r"/_sim/delay/{ms:\d+}", _delay)
        app.router.add_route(method, r"/_sim/status/{code:\d{3}}", _status)
    # Echo answers any method, so tests can see exactly what the gateway forwarded.
    app.router.add_route("*", "/_sim/echo", _echo)
    app.router.add_route("*", "/_sim/echo/{tail:.*}", _echo)
    return app


# --- Command line ---------------------------------------------------------------------


def _client(text: str) -> tuple[str, str]:
    client_id, sep, secret = text.strip().partition(":")
    if not sep or not client_id or not secret:
        raise argparse.ArgumentTypeError(f"expected ID:SECRET, got {text!r}")
    return client_id, secret


def _parse_args(argv: list[str] | None, environ: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="lgsp-simulator",
        description="Simulated national data-sharing platform and population database.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default $LGSP_SIM_PORT or 8090")
    parser.add_argument(
        "--client",
        action="append",
        type=_client,
        default=[],
        metavar="ID:SECRET",
        help="allowed client (repeatable); default from $LGSP_SIM_CLIENTS='id:secret,...'",
    )
    parser.add_argument("--token-ttl", type=int, default=300, help="token lifetime, seconds")
    parser.add_argument(
        "--witness-log",
        action="append",
        default=[],
        metavar="VKEY",
        help="a provincial audit log to witness: its verifier key (lgsp audit keys' log_key)",
    )
    args = parser.parse_args(argv)
    if args.port is None:
        try:
            args.port = int(environ.get("LGSP_SIM_PORT", "8090"))
        except ValueError:
            parser.error("LGSP_SIM_PORT must be an integer")
    if not args.client:
        try:
            entries = environ.get("LGSP_SIM_CLIENTS", "").split(",")
            args.client = [_client(entry) for entry in entries if entry.strip()]
        except argparse.ArgumentTypeError as exc:
            parser.error(f"LGSP_SIM_CLIENTS: {exc}")
    if not args.client:
        parser.error("no clients: give --client ID:SECRET or set LGSP_SIM_CLIENTS")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the simulator until interrupted (``lgsp-simulator --help``)."""
    args = _parse_args(argv, os.environ)
    app = create_app(dict(args.client), token_ttl=args.token_ttl, witness_logs=args.witness_log)
    host = f"[{args.host}]" if ":" in args.host else args.host

    def announce(*_: object) -> None:
        print(f"national simulator listening on http://{host}:{args.port}", flush=True)
        print(f"witness key: {app[witness.WITNESS].vkey()}", flush=True)

    web.run_app(app, host=args.host, port=args.port, print=announce)
