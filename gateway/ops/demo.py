"""`lgsp demo`: the gateway on embedded defaults beside the national platform simulator,
with the sample policies loaded and ready-to-paste commands printed.

`--check` runs those same printed commands in bash and verifies what they print, so the
demo a person follows and the one the tests run cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.admin import credentials as credential_ops
from gateway.config import versions as policy_state
from gateway.config.policy import load_policy_dir
from gateway.core.logging import configure_logging
from gateway.core.settings import Settings
from gateway.edge.app import create_app
from gateway.edge.protocol import GatewayRunner
from gateway.identity import accounts
from gateway.ops.demo_receiver import receiver_app
from gateway.registry.bundled import load_bundled
from gateway.store.db import create_engine, session_factory
from gateway.store.migrate import upgrade_async

DEMO_CLIENT = "motcua"
DEMO_ADMIN = "quantri-dulieu"  # the sample policy's administrator
# The console's sample people: (account, full name, roles).
DEMO_PEOPLE = (
    ("quantri", "Quản trị viên (mẫu)", ["administrator"]),
    ("kiemtoan", "Kiểm toán viên (mẫu)", ["auditor"]),
)
PROVINCE_AT_NATIONAL = "000.00.00.H49"  # the province's client id at the national platform
POPULATION_SERVICE = "/r1/000.00.00.G01/csdlqg-dancu/v1"
CANONICAL_POPULATION = "/r1/000.00.00.G01/csdlqg-dancu/v2"
BUSINESS = "/r1/000.00.00.G12/csdlqg-dkdn/v1"
DOSSIERS = "/r1/000.00.00.G25/dvcqg-ho-so/v1"
DOCUMENTS = "/r1/000.00.00.G22/lien-thong-van-ban/v1"
# Inbound: the national public service portal reads a dossier's status from the
# province's one-stop-shop, with a token the national platform signed (national-callin.yaml).
DOSSIER_STATUS = "/r1/000.00.31.H49/motcua-ho-so/v1/ho-so/000.00.31.H49-251122-0001/trang-thai"
PROVINCE_AUDIENCE = "urn:lgsp:000.00.00.H49"  # what the platform's tokens must be for
# Department to department: health reads a birth registration from Justice (civil-status.yaml).
HEALTH_CLIENT = "yte"
# Events: the national portal publishes dossier updates as this client (dossier-events.yaml).
PUBLISHER = "dvcqg-sukien"
BIRTHS = "/r1/000.00.12.H49/khai-sinh/v1/khai-sinh/049225000123"


@dataclass(frozen=True)
class Step:
    title: str
    command: str
    expect: str  # a text the step's output must contain


def _get_token(variable: str, client: str, secret: str, gateway: str) -> str:
    """A shell line that puts a fresh access token for `client` in $variable."""
    return (
        f"{variable}=$(curl -s -u '{client}:{secret}' -d grant_type=client_credentials "
        f"{gateway}/oauth2/token | python3 -c 'import json,sys; "
        'print(json.load(sys.stdin)["access_token"])\')'
    )


def _send_letter(gateway: str, accountability: str, number: str) -> str:
    """A shell line that sends a letter and puts the 202's JSON in $LETTER."""
    return (
        f"LETTER=$(curl -s -X POST {gateway}{DOCUMENTS}/documents \\\n"
        f'  -H "Authorization: Bearer $TOKEN" {accountability} \\\n'
        "  -H 'Content-Type: application/json' -d '"
        '{"to": [{"organId": "000.00.31.H49", "organName": "Trung tâm Phục vụ hành chính '
        f'công tỉnh"}}], "documentId": "000.00.00.H49,2025/11/22,\'"{number}"\'/UBND-VP", '
        '"code": {"number": "123", "notation": "UBND-VP"}, '
        '"promulgation": {"place": "Thành phố Huế", "date": "2025-11-22"}, '
        '"type": {"code": "1", "name": "Công văn"}, '
        '"subject": "Về việc triển khai Nền tảng tích hợp, chia sẻ dữ liệu cấp tỉnh", '
        '"signer": {"fullName": "Nguyễn Văn Bình", "position": "Chủ tịch"}, '
        '"attachments": [{"name": "123-UBND-VP.pdf", "contentType": "application/pdf", '
        '"contentBase64": "JVBERi0xLjcKJSVFT0YK"}]}\') \\\n'
        '&& STATUS=$(echo "$LETTER" | python3 -c \'import json,sys; '
        'print(json.load(sys.stdin)["status"])\')'
    )


def _await_answer(gateway: str) -> str:
    """A shell line that polls $STATUS's answer (for up to 30 s) and prints it."""
    return (
        'for i in $(seq 150); do ANSWER=$(curl -s -H "Authorization: Bearer $TOKEN" '
        f'"{gateway}$STATUS/answer"); case "$ANSWER" in *message-not-answered*) sleep 0.2;; '
        '*) break;; esac; done; echo "$ANSWER"'
    )


def _event_and_outage_steps(
    gateway: str,
    simulator: str,
    receiver: str,
    publisher_secret: str,
    accountability: str,
    python: str,
) -> list[Step]:
    outage = f"curl -s -o /dev/null -X POST {simulator}/_sim/outage/document-exchange"
    event = (
        '{"type": "dossier.updated", "key": "000.00.31.H49-251122-0001", "data": '
        '{"dossierId": "000.00.31.H49-251122-0001", "status": "processing"}}'
    )
    verify = (
        "import json,os,sys; from standardwebhooks.webhooks import Webhook; "
        "r = json.load(sys.stdin)[-1]; "
        'Webhook(os.environ["SUB_SECRET"]).verify(r["body"], r["headers"]); '
        'print("signature verified:", r["headers"]["webhook-id"], r["body"])'
    )
    return [
        Step(
            "Subscribe the one-stop-shop system to dossier updates from the national portal "
            "(admin API); the answer shows the signing secret once",
            'SUB_SECRET=$(curl -s -X POST -H "Authorization: Bearer $ADMIN_TOKEN" \\\n'
            '  -H \'Content-Type: application/json\' -d \'{"topic": "dvcqg-ho-so", '
            f'"client": "{DEMO_CLIENT}", "callback_url": "{receiver}/hooks/lgsp"}}\' '
            f"\\\n  '{gateway}/admin/v1/subscriptions?comment=demo' \\\n"
            "  | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"secret\"])') "
            '&& echo "subscribed; secret ${SUB_SECRET:0:10}..."',
            "subscribed; secret whsec_",
        ),
        Step(
            "The national portal publishes a dossier update (the simulator posts it to "
            "/events/v1/dvcqg-ho-so): 202 once it is stored",
            f"curl -s -w '\\n' -X POST {simulator}/_sim/publish \\\n"
            "  -H 'Content-Type: application/json'"
            f' -d \'{{"gateway": "{gateway}", "topic": "dvcqg-ho-so", '
            f'"client_id": "{PUBLISHER}", "client_secret": "{publisher_secret}", '
            f'"event": {event}}}\'',
            '"status": 202',
        ),
        Step(
            "The demo's small receiver got it, signed: check the Standard Webhooks signature "
            "with the subscription's secret",
            f"for i in $(seq 100); do curl -s {receiver}/received | grep -q webhook-id && break; "
            "sleep 0.1; done; \\\n"
            f"curl -s {receiver}/received | SUB_SECRET=\"$SUB_SECRET\" {python} -c '{verify}'",
            "signature verified:",
        ),
        Step(
            "The national document exchange goes down (the simulator's switch); a letter sent "
            "now is accepted at once and kept: its status says pending, and why",
            f"{outage} -d '{{\"down\": true}}' \\\n&& "
            + _send_letter(gateway, accountability, "$(date +%s)9")
            + " \\\n&& sleep 1 && curl -s -w '\\n' -H \"Authorization: Bearer $TOKEN\" "
            f'"{gateway}$STATUS"',
            '"state":"pending"',
        ),
        Step(
            "The exchange is back: the letter goes out by itself, and its answer waits at "
            "the status URL",
            f"{outage} -d '{{\"down\": false}}' \\\n&& " + _await_answer(gateway),
            '"name":"arrived"',
        ),
    ]


def _scheduled_pull_step(gateway: str, python: str) -> Step:
    job = f"{gateway}/admin/v1/jobs/thay-doi-cu-tru/runs"
    packages = f"{gateway}/bulk/v1/thay-doi-cu-tru/packages"
    first = 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])'
    return Step(
        "Run the nightly pull of residence changes now (a scheduled job); the one-stop-shop "
        "system downloads its bulk package",
        f'curl -s -o /dev/null -X POST -H "Authorization: Bearer $ADMIN_TOKEN" '
        f"'{job}?comment=demo' \\\n"
        f'&& for i in $(seq 150); do curl -s -H "Authorization: Bearer $ADMIN_TOKEN" '
        f"'{job}?limit=1' | grep -q '\"state\":\"succeeded\"' && break; sleep 0.2; done; \\\n"
        f"PKG=$(curl -s -H \"Authorization: Bearer $TOKEN\" {packages} | {python} -c '{first}') "
        f'\\\n&& curl -s -H "Authorization: Bearer $TOKEN" "{packages}/$PKG" | head -n 2',
        '"MaThayDoi":"TDCT-000001"',
    )


def demo_steps(
    gateway: str,
    secret: str,
    lgsp: str,
    admin_secret: str,
    simulator: str = "http://127.0.0.1:8090",
    health_secret: str = "",
    receiver: str = "http://127.0.0.1:8092",
    publisher_secret: str = "",
    python: str = "python3",
) -> list[Step]:
    post = f"curl -s -i -w '\\n' -X POST {gateway}{POPULATION_SERVICE}"
    accountability = (
        "-H 'X-Officer-Id: CB-0042' -H 'X-Procedure-Code: 1.001234' "
        "-H 'X-Case-Number: 000.00.12.H49-261121-0001'"
    )
    return [
        Step(
            "Get an access token for the one-stop-shop system (OAuth2 client credentials)",
            _get_token("TOKEN", DEMO_CLIENT, secret, gateway)
            + ' && echo "token: ${TOKEN:0:32}..."',
            "token: ey",
        ),
        Step(
            "Look a citizen up in the national population database, through the gateway",
            f"{post}/cong-dan/tra-cuu \\\n"
            f'  -H "Authorization: Bearer $TOKEN" {accountability} \\\n'
            "  -H 'Content-Type: application/json' -d '{\"SoDinhDanh\": \"001099012345\"}'",
            '"MaLoi":"0"',
        ),
        Step(
            "Try a lookup the policy does not grant this system (by name): a clear 403",
            f"{post}/cong-dan/tra-cuu-ho-ten \\\n"
            f'  -H "Authorization: Bearer $TOKEN" {accountability} \\\n'
            "  -H 'Content-Type: application/json' \\\n"
            '  -d \'{"HoVaTen": "Nguyễn Văn An", "NgayThangNamSinh": "1999-03-15"}\'',
            "urn:lgsp:problem:access-denied",
        ),
        Step(
            "Send a malformed lookup (an 11-digit ID, an unknown field): a 400 naming each error",
            f"{post}/cong-dan/tra-cuu \\\n"
            f'  -H "Authorization: Bearer $TOKEN" {accountability} \\\n'
            "  -H 'Content-Type: application/json' \\\n"
            '  -d \'{"SoDinhDanh": "00109901234", "GhiChu": "x"}\'',
            "urn:lgsp:problem:invalid-message",
        ),
        Step(
            "The same lookup in the province's own form: the population adapter converts both ways",
            f"curl -s -i -w '\\n' -X POST {gateway}{CANONICAL_POPULATION}/cong-dan/tra-cuu \\\n"
            f'  -H "Authorization: Bearer $TOKEN" {accountability} \\\n'
            "  -H 'Content-Type: application/json' -d '{\"personalId\": \"001099012345\"}'",
            '"outcome":"found"',
        ),
        Step(
            "Look an enterprise branch up in the national business registration database "
            "(JSON here, XML there)",
            f"curl -s -i -w '\\n' -X POST {gateway}{BUSINESS}/doanh-nghiep/tra-cuu \\\n"
            f'  -H "Authorization: Bearer $TOKEN" {accountability} \\\n'
            "  -H 'Content-Type: application/json' -d '{\"enterpriseCode\": \"0101234567-001\"}'",
            '"requestedBranch":{"code":"0101234567-001"',
        ),
        Step(
            "Send an official letter with an attachment to another agency (edXML over SOAP "
            "on the national side): accepted at once (202, store-and-forward), its answer "
            "fetched from the status URL",
            _send_letter(gateway, accountability, "$(date +%s)")
            + ' && echo "$LETTER" \\\n&& '
            + _await_answer(gateway),
            '"name":"arrived"',
        ),
        Step(
            "Tell the national public service portal that a dossier was received",
            f"curl -s -i -w '\\n' -X POST {gateway}{DOSSIERS}/ho-so/trang-thai \\\n"
            f'  -H "Authorization: Bearer $TOKEN" {accountability} \\\n'
            "  -H 'Content-Type: application/json' -d '"
            '{"dossierId": "000.00.31.H49-251122-0001", "agencyCode": "000.00.31.H49", '
            '"procedure": {"code": "1.001193", "name": "Cấp giấy phép xây dựng (mẫu)"}, '
            '"receivedAt": "2025-11-22T08:30:00+07:00", '
            '"applicant": {"fullName": "Nguyễn Thị Hường", "personalId": "001199012345"}, '
            '"status": "received", "updatedAt": "2025-11-22T08:30:00+07:00"}\'',
            '"synced":true',
        ),
        Step(
            "The national platform calls in: the national public service portal asks the "
            "one-stop-shop for a dossier's status, with a token the platform signed itself",
            f"curl -s -w '\\n' -X POST {simulator}/_sim/call-in \\\n"
            "  -H 'Content-Type: application/json' \\\n"
            f'  -d \'{{"gateway": "{gateway}", "audience": "{PROVINCE_AUDIENCE}", '
            f'"path": "{DOSSIER_STATUS}"}}\'',
            '"X-Client-Agency": "000.00.00.G25"',
        ),
        Step(
            "Department to department: the health department reads a birth registration "
            "from the Department of Justice's civil-status registry",
            _get_token("HEALTH_TOKEN", HEALTH_CLIENT, health_secret, gateway) + " \\\n"
            f"&& curl -s -w '\\n' {gateway}{BIRTHS} \\\n"
            '  -H "Authorization: Bearer $HEALTH_TOKEN" '
            "-H 'X-Officer-Id: YT-0007' -H 'X-Procedure-Code: 1.001612'",
            '"soDangKy": "123/2025"',
        ),
        Step(
            "List the message schemas in the registry (Confluent Schema Registry API)",
            f"curl -s -w '\\n' -u '{DEMO_CLIENT}:{secret}' {gateway}/registry/subjects",
            "population.citizen-lookup.national.request",
        ),
        Step(
            "List the audit records of those calls",
            f"{lgsp} audit list --limit 20",
            "access-denied",
        ),
        Step(
            "Verify the audit trail: every record's hash, the chain's links, signed checkpoints",
            f"{lgsp} audit verify",
            "the audit trail is intact",
        ),
        Step(
            "As the administrator, give the population service more time (admin API)",
            _get_token("ADMIN_TOKEN", DEMO_ADMIN, admin_secret, gateway) + " \\\n"
            "&& curl -s -w '\\n' -X PATCH -H \"Authorization: Bearer $ADMIN_TOKEN\" \\\n"
            "  -H 'Content-Type: application/merge-patch+json' -d '{\"timeouts\": "
            '{"total_ms": 15000}}\' \\\n'
            f"  '{gateway}/admin/v1/services{POPULATION_SERVICE[3:]}?comment=demo'",
            "timeouts.total_ms: 10000",
        ),
        Step(
            "See the configuration's versions: who changed what, from where, and why",
            f"{lgsp} policy history",
            f"admin-api:{DEMO_ADMIN}",
        ),
        *_event_and_outage_steps(
            gateway, simulator, receiver, publisher_secret, accountability, python
        ),
        _scheduled_pull_step(gateway, python),
        Step(
            "Operations: is it ready (store, keys, audit), and what has it served (Prometheus)",
            f"curl -s -w '\\n' {gateway}/readyz && curl -s {gateway}/metrics \\\n"
            "  | grep -E '^lgsp_exchange_duration_seconds_count.*(outcome=\"ok\"|access-denied)'",
            'client="motcua",outcome="ok"',
        ),
    ]


def _lgsp_command() -> str:
    local = Path(sys.executable).parent / "lgsp"
    if local.exists():
        with contextlib.suppress(ValueError):
            return str(local.relative_to(Path.cwd()))
        return str(local)
    return shutil.which("lgsp") or "lgsp"


def _python_command() -> str:
    return _lgsp_command().removesuffix("lgsp") + "python"


async def _people(session: AsyncSession) -> list[tuple[list[str], accounts.Issued]]:
    """The sample people, made anew each run (a new one-time password and TOTP secret)."""
    out = []
    for name, full_name, roles in DEMO_PEOPLE:
        if await accounts.find_account(session, name) is None:
            issued = await accounts.create_account(
                session, name=name, display_name=full_name, roles=roles, actor="demo"
            )
        else:
            issued = await accounts.reset_account(session, name, actor="demo")
        out.append((roles, issued))
    return out


def _print_people(gateway: str, people: list[tuple[list[str], accounts.Issued]]) -> None:
    print(f"\nconsole: {gateway}/console/  (password, then the code of an authenticator app;")
    print("these are made anew at each start and shown once):")
    for roles, p in people:
        print(f"  {p.name:9} {', '.join(roles):14} password {p.password}")
        print(f"  {'':9} {'':14} TOTP secret {p.totp_secret}  ({p.uri})")
    python = _python_command()
    secret = people[0][1].totp_secret
    code = f"{python} -c 'import pyotp; print(pyotp.TOTP(\"{secret}\").now())'"
    print(f"  without an app, {people[0][1].name}'s current code: {code}")


async def _prepare(
    settings: Settings, policies: Path
) -> tuple[str, str, str, str, list[tuple[list[str], accounts.Issued]]]:
    await upgrade_async(settings.database_url)
    policy = load_policy_dir(policies)
    engine = create_engine(settings.database_url)
    try:
        await load_bundled(session_factory(engine), settings.schemas_dir)
        async with session_factory(engine)() as session, session.begin():
            changes = await policy_state.apply_policy(
                session, policy, actor="demo", comment="lgsp demo"
            )
            # The files are the whole configuration: say what applying them removed.
            for line in changes:
                if line.startswith(("deleted", "removed")):
                    print(f"demo: applying {policies} {line}")
            # Fresh secrets each run: secrets are never kept in files, only their digests.
            secrets_ = [
                await credential_ops.issue(
                    session, client_code=code, kind="secret", actor="demo", revoke_others=True
                )
                for code in (DEMO_CLIENT, DEMO_ADMIN, HEALTH_CLIENT, PUBLISHER)
            ]
            client, admin, health, publisher = secrets_
            return client, admin, health, publisher, await _people(session)
    finally:
        await engine.dispose()


async def _start_simulator(port: int, secret: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulator",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--client",
        f"{PROVINCE_AT_NATIONAL}:{secret}",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=15)
    except TimeoutError:
        line = b""
    if b"listening" not in line:
        proc.kill()
        raise RuntimeError(f"the national simulator did not start on port {port}")
    return proc


def _print_steps(steps: list[Step]) -> None:
    print("\nThe gateway and the national simulator are running. In another terminal,")
    print("from this directory, paste these in order:\n")
    for i, step in enumerate(steps, 1):
        print(f"# {i}. {step.title}")
        print(step.command + "\n")
    sys.stdout.flush()


def _check_steps(steps: list[Step]) -> bool:
    script = "set -u\n" + "".join(
        f"echo '@@step {i}'\n{step.command}\necho\n" for i, step in enumerate(steps, 1)
    )
    # The commands are the ones printed above, built from our own values only.
    out = subprocess.run(  # noqa: S603
        ["bash", "-c", script],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    outputs = out.split("@@step ")[1:]
    ok = len(outputs) == len(steps)
    for i, step in enumerate(steps, 1):
        text = outputs[i - 1] if i <= len(outputs) else ""
        passed = step.expect in text
        ok = ok and passed
        print(f"[{'ok' if passed else 'FAILED'}] {i}. {step.title}")
        if not passed:
            print(text)
    return ok


async def _run(port: int, simulator_port: int, policies: Path, check: bool) -> int:
    national_secret = secrets.token_urlsafe(24)
    os.environ["LGSP_NDXP_CLIENT_SECRET"] = national_secret
    simulator_url = f"http://127.0.0.1:{simulator_port}"
    os.environ["LGSP_NDXP_URL"] = simulator_url
    # The simulator also plays the national issuer's JWKS and the provincial providers.
    os.environ["LGSP_NDXP_JWKS_URL"] = f"{simulator_url}/.well-known/jwks.json"
    os.environ["LGSP_MOTCUA_URL"] = f"{simulator_url}/tinh/motcua/v1"
    os.environ["LGSP_HOTICH_URL"] = f"{simulator_url}/tinh/hotich/v1"
    # The simulator is on 127.0.0.1, which the default outbound allow-list refuses.
    # The console's cookie drops Secure and __Host- on this plain-HTTP demo, for the
    # browsers that refuse Secure cookies from http://127.0.0.1.
    settings = Settings(
        port=port, upstream_allowed_networks=["loopback"], console_secure_cookies=False
    )
    secret, admin_secret, health_secret, publisher_secret, people = await _prepare(
        settings, policies
    )
    simulator = await _start_simulator(simulator_port, national_secret)
    runner = GatewayRunner(create_app(settings), access_log=None)
    # The one-stop-shop system's webhook receiver, on a port of its own.
    hooks = web.AppRunner(receiver_app(), access_log=None)
    try:
        await runner.setup()
        await web.TCPSite(runner, settings.host, settings.port).start()
        await hooks.setup()
        hook_socket = socket.socket()
        hook_socket.bind(("127.0.0.1", 0))
        await web.SockSite(hooks, hook_socket).start()
        receiver = f"http://127.0.0.1:{hook_socket.getsockname()[1]}"
        gateway = f"http://{settings.host}:{settings.port}"
        print(f"gateway listening on {gateway}  (database {settings.database_url})")
        print(f"national simulator on http://127.0.0.1:{simulator_port}")
        print(
            "outbound: loopback upstreams (the simulator) are allowed for this demo only; "
            "a gateway's LGSP_UPSTREAM_ALLOWED_NETWORKS defaults to public and private "
            'networks (docs/administrator.md, "Outbound safety")'
        )
        steps = demo_steps(
            gateway,
            secret,
            _lgsp_command(),
            admin_secret,
            simulator_url,
            health_secret,
            receiver,
            publisher_secret,
            _python_command(),
        )
        _print_people(gateway, people)
        if check:
            return 0 if await asyncio.to_thread(_check_steps, steps) else 1
        _print_steps(steps)
        print("Press Ctrl-C to stop.")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        return 0
    finally:
        await runner.cleanup()
        await hooks.cleanup()
        simulator.terminate()
        await simulator.wait()


def run_demo(
    *, port: int, simulator_port: int, check: bool, policies: Path = Path("policies")
) -> int:
    configure_logging("WARNING")
    return asyncio.run(_run(port, simulator_port, policies, check))
