"""Which JSON Schema validator to use: each candidate parses and validates one population
lookup request and one answer, per exchange, against the bundled national schemas.

    .venv/bin/python -m bench.validators [--repeat 20000]

fastjsonschema and jsonschema are not project dependencies; install them to include
them (`.venv/bin/pip install fastjsonschema jsonschema`), or they are skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO / "schemas" / "population"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20000)
    n = ap.parse_args().repeat
    request = orjson.loads((SCHEMAS / "citizen-lookup.national.request.json").read_bytes())
    response = orjson.loads((SCHEMAS / "citizen-lookup.national.response.json").read_bytes())
    citizen = orjson.loads((REPO / "simulator" / "data" / "citizens.json").read_bytes())[0]
    citizen.pop("HanChe", None)
    body_req = orjson.dumps(
        {
            "MaYeuCau": "r1",
            "MaDVC": "1.001234",
            "MaDonVi": "000.00.31.H49",
            "MaCanBo": "CB-1",
            "SoDinhDanh": "001099012345",
        }
    )
    body_resp = orjson.dumps(
        {"MaYeuCau": "r1", "MaLoi": "0", "MoTaLoi": "Thành công", "CongDan": citizen}
    )

    candidates: dict[str, tuple[Callable[[Any], bool], Callable[[Any], bool]]] = {}
    rq, rs = jsonschema_rs.validator_for(request), jsonschema_rs.validator_for(response)
    candidates["jsonschema-rs"] = (rq.is_valid, rs.is_valid)
    if importlib.util.find_spec("fastjsonschema"):
        import fastjsonschema

        fq, fs = fastjsonschema.compile(request), fastjsonschema.compile(response)
        candidates["fastjsonschema"] = (lambda x: fq(x) is not None, lambda x: fs(x) is not None)
    if importlib.util.find_spec("jsonschema"):
        import jsonschema

        jq = jsonschema.Draft202012Validator(request)
        js = jsonschema.Draft202012Validator(response)
        candidates["jsonschema (pure Python)"] = (jq.is_valid, js.is_valid)
    candidates["orjson parsing alone"] = (lambda x: True, lambda x: True)

    print(f"{'validator':28} {'µs per exchange':>16}")
    for name, (check_req, check_resp) in candidates.items():
        t = time.perf_counter()
        for _ in range(n):
            assert check_req(orjson.loads(body_req)) and check_resp(orjson.loads(body_resp))
        print(f"{name:28} {(time.perf_counter() - t) / n * 1e6:16.1f}")


if __name__ == "__main__":
    main()
