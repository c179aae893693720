"""`--json` is `ground.result`'s dict and nothing else, for every command: the same top-level
keys (`ground.result.KEYS`), the flow's own fields under `data`, and the exit code the
verdict's (real CLI subprocesses on the session sandbox). Bad input with --json is in
test_cli_bad_input.py."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from ground.result import EXIT_CODES, KEYS
from tests.support.cleanup import forget_monitoring
from tests.support.cli import run_cli

COMMANDS = {
    "schema_init": ["schema-init", "--env", "local"],
    "insert_check": ["insert-check", "--env", "local"],
    "monitoring": ["monitoring", "--env", "local"],
    "cloudtrail_archive": ["cloudtrail-archive", "--env", "local", "--days", "1",
                           "--max-rps", "100"],
    "evidence_upload_pending": ["evidence", "upload-pending", "--env", "local"],
    "deploy": ["deploy", "--env", "local", "--image", "latest", "--plan"],
    "preflight": ["preflight", "--env", "local"],
    "repair": ["repair", "exec", "--env", "local"],
    "render": ["render", "--env", "local", "--image", "latest"],
    "diff": ["diff", "--env", "local"],
}
# Read-only commands that run no flow and so write no evidence bundle.
NO_BUNDLE = {"evidence_upload_pending", "render", "diff"}


@pytest.fixture(scope="module")
def outputs(sandbox, prefect_server, main_schema, capture_dir):
    sandbox.faults.clear()
    forget_monitoring(sandbox)  # the plan from an account without monitoring resources
    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = dict(zip(COMMANDS, pool.map(lambda a: run_cli(*a, "--json", capture_dir=capture_dir),
                                           COMMANDS.values()), strict=True))
    return runs


@pytest.mark.parametrize("flow", list(COMMANDS))
def test_json_is_the_contract_dict(outputs, flow):
    r = outputs[flow]
    out = json.loads(r.stdout)  # the whole of stdout: nothing printed around it
    assert tuple(out) == KEYS, out
    assert (out["flow"], out["env"]) == (flow, "local")
    assert r.returncode == EXIT_CODES[out["verdict"]], (r.returncode, out, r.stderr[-2000:])
    assert isinstance(out["reason"], str) and out["reason"] and "\n" not in out["reason"]
    assert isinstance(out["data"], dict)
    if flow not in NO_BUNDLE:
        assert out["evidence"] and set(out["evidence"]) == {
            "folder", "s3_uri", "manifest", "upload_pending", "pending_reason", "files"}


def test_the_commands_succeed_on_the_sandbox(outputs):
    verdicts = {flow: json.loads(r.stdout)["verdict"] for flow, r in outputs.items()}
    assert verdicts == dict.fromkeys(COMMANDS, "success"), verdicts
