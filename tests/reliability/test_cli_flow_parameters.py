"""The CLI stores a flow run's parameters without importing FastAPI (papyrus_ops.runner's
`_plain_parameters`), and what the API stores is what Prefect's own `serialize_parameters`
would have stored, plain or not."""

from __future__ import annotations

import enum
import json
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
from prefect import flow

from papyrus_ops.runner import _plain, _plain_parameters
from tests.support.cli import ROOT, cli_env


class Colour(enum.StrEnum):
    RED = "red"


@flow(name="cli-parameters-probe")
def _probe(env: str = "local"):
    return None


PLAIN = [
    {"env": "local", "n": 3, "ratio": 0.5, "apply": True, "sql": None},
    {"env": "local", "days": [1, 2, 3], "opts": {"a": [True, None], "b": {"c": "d"}}},
    {"env": "local", "nan": float("inf")},
]
NOT_PLAIN = [
    {"env": "local", "path": Path("deployments/local")},
    {"env": "local", "pure": PurePosixPath("a/b")},
    {"env": "local", "colour": Colour.RED},              # a str, but encoded as its value
    {"env": "local", "pair": (1, 2)},                     # a tuple becomes a list
    {"env": "local", "opts": {"_sa_state": 1, "x": 2}},   # `_sa` keys are dropped
    {"env": "local", "opts": {1: "int key"}},
]


@pytest.mark.parametrize("params", PLAIN + NOT_PLAIN)
def test_stored_parameters_are_prefects_own(params):
    prefect_own = _probe.serialize_parameters(params)
    with _plain_parameters(_probe):
        ours = _probe.serialize_parameters(params)
    assert ours == prefect_own
    assert json.dumps(ours) == json.dumps(prefect_own)
    assert "serialize_parameters" not in vars(_probe)  # removed after the run


def test_only_plain_json_skips_prefects_encoder():
    assert all(all(_plain(v) for v in p.values()) for p in PLAIN)
    assert not any(all(_plain(v) for v in p.values()) for p in NOT_PLAIN)


_CHILD = """
import json, sys
from prefect import flow
from papyrus_ops.runner import run_flow
from ground.result import result, to_state

@flow(name="cli-parameters-probe")
def probe(env: str = "local", days: int = 1, tags: list | None = None):
    return to_state(result("probe", env, "success", "ok", data={"days": days}))

res = run_flow(probe, env="local", days=3, tags=["a", "b"])
print(json.dumps({"verdict": res["verdict"], "fastapi": "fastapi" in sys.modules}))
"""


def test_a_cli_flow_run_stores_its_parameters_without_fastapi(prefect_server):
    r = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                       timeout=300, cwd=ROOT, env=cli_env(PREFECT_API_URL=prefect_server))
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"verdict": "success", "fastapi": False}

    import httpx

    runs = httpx.post(f"{prefect_server}/flow_runs/filter", timeout=10, json={
        "limit": 1, "sort": "START_TIME_DESC",
        "flows": {"name": {"any_": ["cli-parameters-probe"]}}}).json()
    assert runs and runs[0]["parameters"] == {"env": "local", "days": 3, "tags": ["a", "b"]}
    assert runs[0]["state_type"] == "COMPLETED"
