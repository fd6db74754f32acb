"""nginx instances for bench/proxies.py: the fixed-cost national upstream (canned answers
with `return 200`) and the nginx reverse proxy in front of it (row b).

Each instance has its own temporary prefix, configuration, pid file and logs, one worker
process, and runs in the foreground (`daemon off`) so that the benchmark stops it by its
own pid. The canned population answer is the one the national simulator (simulator/)
gives for a sample citizen, with MaYeuCau echoing the caller's X-Request-Id as the real
platform does (the gateway's adapter withholds an answer to another request id).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import orjson
from aiohttp.test_utils import TestClient, TestServer

TOKEN_PATH = "/oauth2/token"
LOOKUP_PATH = "/csdldc/v1/cong-dan/tra-cuu"
NATIONAL_TOKEN = "bench-national-token"
SAMPLE_PIN = "001099012345"  # the first citizen of simulator/data/citizens.json
PROVINCE = "000.00.00.H49"
_MARK = "BENCH-REQUEST-ID-MARK"


def find_nginx() -> str | None:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    return found


def national_lookup_body(request_id: str = "") -> bytes:
    """The national lookup by number for the sample citizen, as the gateway's adapter
    sends it (accountability fields included): what rows a-c send."""
    return orjson.dumps(
        {
            "MaYeuCau": request_id or "bench-1",
            "MaDVC": "1.001234",
            "MaCanBo": "CB-0042",
            "MaDonVi": PROVINCE,
            "MaTichHop": "00000000000000000049",
            "SoDinhDanh": SAMPLE_PIN,
        }
    )


async def national_answer() -> bytes:
    """The simulator's answer to a lookup of the sample citizen, with a marker where the
    request id goes (the simulator in this process, through its real HTTP handlers)."""
    from simulator.app import create_app

    secret = "bench-upstream-secret"
    async with TestClient(TestServer(create_app({PROVINCE: secret}))) as client:
        async with client.post(
            TOKEN_PATH,
            data={
                "grant_type": "client_credentials",
                "client_id": PROVINCE,
                "client_secret": secret,
            },
        ) as r:
            token = (await r.json())["access_token"]
        async with client.post(
            LOOKUP_PATH,
            data=national_lookup_body(_MARK),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        ) as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"the simulator answered {r.status}: {body!r}")
    if orjson.loads(body).get("MaYeuCau") != _MARK:
        raise RuntimeError("the simulator's answer does not echo MaYeuCau")
    return body


def _nginx_string(text: str) -> str:
    """`text` as a single-quoted nginx string (`$name` in it is a variable)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _common(prefix: Path) -> str:
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""worker_processes 1;
daemon off;
master_process on;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp}
    keepalive_requests 100000000;
    keepalive_timeout 300s;
"""


def upstream_conf(prefix: Path, port: int, answer: bytes) -> str:
    """Canned answers: the token endpoint and the population lookup (MaYeuCau from the
    caller's X-Request-Id; empty if none, which the adapter accepts)."""
    if b"$" in answer:  # nginx has no escape for `$`; the citizen records have none
        raise ValueError("a canned body cannot contain '$'")
    body = answer.decode().replace(f'"{_MARK}"', '"$http_x_request_id"')
    token = orjson.dumps(
        {"access_token": NATIONAL_TOKEN, "token_type": "Bearer", "expires_in": 3600}
    ).decode()
    return (
        _common(prefix)
        + f"""    default_type "application/json; charset=utf-8";
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = {TOKEN_PATH} {{ return 200 {_nginx_string(token)}; }}
        location = {LOOKUP_PATH} {{ return 200 {_nginx_string(body)}; }}
        location = /healthz {{ return 200 '{{"status":"ok"}}'; }}
        location / {{ return 404 '{{"MaLoi":"404"}}'; }}
    }}
}}
"""
    )


def proxy_conf(prefix: Path, port: int, upstream_port: int) -> str:
    """nginx `proxy_pass` to the upstream, keepalive connections to it."""
    return (
        _common(prefix)
        + f"""    upstream national {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
        keepalive_requests 100000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://national;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
    )


class Nginx:
    """One nginx master (and its one worker) in a temporary prefix."""

    def __init__(self, binary: str, name: str, conf: str | None = None) -> None:
        self.binary, self.name = binary, name
        self.prefix = Path(tempfile.mkdtemp(prefix=f"lgsp-bench-{name}-"))
        # nginx workers may run as an unprivileged user when the master is root.
        self.prefix.chmod(0o755)
        self.proc: subprocess.Popen[bytes] | None = None
        if conf is not None:
            self.write(conf)

    @property
    def conf_path(self) -> Path:
        return self.prefix / "nginx.conf"

    def write(self, conf: str) -> None:
        self.conf_path.write_text(conf, encoding="utf-8")

    def start(self, pin: list[str]) -> None:
        """Start in the foreground; `pin` is a taskset prefix (or empty)."""
        argv = [
            self.binary, "-p", str(self.prefix), "-e", str(self.prefix / "error.log"),
            "-c", str(self.conf_path),
        ]  # fmt: skip
        check = subprocess.run([*argv, "-t"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx ({self.name}) refused its configuration:\n{check.stderr}")
        self.proc = subprocess.Popen([*pin, *argv], stderr=subprocess.PIPE)
        time.sleep(0.2)
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            raise RuntimeError(f"nginx ({self.name}) exited at once:\n{err}{self.error_log()}")

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def pids(self) -> list[int]:
        """The master and its worker(s)."""
        if self.proc is None:
            return []
        return [self.proc.pid, *children(self.proc.pid)]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: fast shutdown of master and workers
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.prefix, ignore_errors=True)


def children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc (every thread's children file)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(set(found))
