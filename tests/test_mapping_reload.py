"""An edited mapping file is live after `policy apply` and the reload it causes, without a
restart (issue 23, defect 2): adapters are kept by configuration *and* the digest of
their mapping files, and `policy apply` records the digest it validated, so an edit
alone is a change to apply.

The adapter here is a real one, in its own folder (as a third party ships one): its
request hook sends the canonical body mapped by `mappings/request.yaml` to the
simulator's echo, which answers what it received.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from gateway.config import versions as policy_state
from gateway.config.diff import diff
from gateway.config.policy import with_mapping_digests
from gateway.conversion import catalogue
from gateway.edge.reload import reload_config
from tests.conftest import PROVINCE_ID, Harness, add_to_policy

ADAPTER = """
from pathlib import Path
from typing import ClassVar

import orjson

from gateway.conversion.sdk import (
    Adapter, AdapterConfig, Context, OutboundRequest, json_object, load_mappings,
)


class MappedEcho(Adapter[AdapterConfig]):
    name: ClassVar[str] = "mapped_echo"
    VERSION: ClassVar[str] = "1.0.0"

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__(config)
        self.to_provider = load_mappings(Path(__file__).resolve().parent)["request"]

    def request(self, outbound: OutboundRequest, context: Context) -> OutboundRequest:
        doc = self.to_provider.apply(json_object(outbound.body), context)
        return OutboundRequest("POST", "", "", outbound.headers, orjson.dumps(doc))


ADAPTER = MappedEcho
"""


def mapping(target: str) -> str:
    return textwrap.dedent(
        f"""\
        rules:
          - {{from: /fullName, to: {target}, required: true}}
        """
    )


@pytest.fixture
def mapped_echo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The adapter's folder, its class installed beside the bundled adapters."""
    folder = tmp_path / "mapped_echo"
    (folder / "mappings").mkdir(parents=True)
    (folder / "adapter.py").write_text(ADAPTER, encoding="utf-8")
    (folder / "mappings" / "request.yaml").write_text(mapping("/HoVaTen"), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("mapped_echo_adapter", folder / "adapter.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "mapped_echo_adapter", module)
    spec.loader.exec_module(module)
    installed = {**catalogue._registry(), "mapped_echo": module.ADAPTER}
    monkeypatch.setattr(catalogue, "_registry", lambda: installed)
    return folder


SERVICE = {
    "provider": PROVINCE_ID,
    "code": "mapped-echo",
    "version": "v1",
    "name": "Mapped echo",
    "upstream": "sim-open",
    "upstream_path": "/_sim/echo",
    "adapter": "mapped_echo",
    "access": [{"client": "motcua"}],
}


async def sent_to_provider(h: Harness, headers: dict[str, str]) -> Any:
    r = await h.http.post(
        f"/r1/{PROVINCE_ID}/mapped-echo/v1/", json={"fullName": "Nguyễn Văn An"}, headers=headers
    )
    assert r.status_code == 200, r.text
    return json.loads(r.json()["body"])


async def apply_current(h: Harness) -> list[str]:
    """`policy apply` of the configuration as it stands (the files unchanged)."""
    async with h.state.sessions() as s, s.begin():
        policy = await policy_state.current_policy(s)
        return await policy_state.apply_policy(s, policy, actor="test")


async def test_an_edited_mapping_is_live_after_apply_without_a_restart(
    gateway: Harness, mapped_echo: Path
) -> None:
    await add_to_policy(gateway, [SERVICE])
    headers = {"Authorization": f"Bearer {await gateway.token('motcua')}"}
    assert await sent_to_provider(gateway, headers) == {"HoVaTen": "Nguyễn Văn An"}

    # The integrator renames the national field in the mapping, nothing else.
    (mapped_echo / "mappings" / "request.yaml").write_text(mapping("/HoTen"), encoding="utf-8")
    async with gateway.state.sessions() as s:
        current = await policy_state.current_policy(s)
    [change] = diff(current, with_mapping_digests(current))  # what `policy diff` shows
    assert change.key == f"{PROVINCE_ID}/mapped-echo/v1"
    assert [d.split(":")[0] for d in change.details()] == ["adapter_mappings"]

    assert await apply_current(gateway) == [f"updated service {PROVINCE_ID}/mapped-echo/v1"]
    assert await reload_config(gateway.state)
    assert await sent_to_provider(gateway, headers) == {"HoTen": "Nguyễn Văn An"}

    # Applying again changes nothing: the digest recorded is the files'.
    assert await apply_current(gateway) == []


async def test_a_broken_mapping_edit_is_refused_by_apply_and_the_old_one_keeps_running(
    gateway: Harness, mapped_echo: Path
) -> None:
    await add_to_policy(gateway, [SERVICE])
    headers = {"Authorization": f"Bearer {await gateway.token('motcua')}"}
    (mapped_echo / "mappings" / "request.yaml").write_text(
        "rules:\n  - {from: /fullName, to: /HoTen, date: {from: [nonsense]}}\n", encoding="utf-8"
    )
    with pytest.raises(ValueError, match=r"mapped_echo/mappings/request\.yaml: rules\.0\.date"):
        await apply_current(gateway)
    # The running gateway is untouched: no version was made, nothing reloads.
    assert not await reload_config(gateway.state)
    assert await sent_to_provider(gateway, headers) == {"HoVaTen": "Nguyễn Văn An"}
