"""The canary sweep's main job: the README's main job (`papyrus-ops demo`: preflight, schema init
dry run + apply, deploy, the three routes, monitoring plan + apply, CloudTrail archive) runs
in-process on the session sandbox — whose DB password and /dbcheck token ARE the canaries
(tests/support/canaries.py) — like the whole fault matrix. When the session ends, whatever order
its tests ran in, everything it produced is searched for them (`canary_sweep` in
tests/reliability/conftest.py, tests/support/sweep.py):

* every file under the evidence root (PAPYRUS_EVIDENCE_ROOT), hidden ones too, gzip unpacked;
* every Prefect log line, artifact, flow run and task run (state messages, parameters) read back
  through the API, and the Prefect server's own database file as a backstop;
* the captured stdout/stderr of every test and CLI subprocess of this directory.

Zero hits is the only pass. (The demo's own `papyrus-ops demo` starts a background sandbox with
a random password, which is why the same flows run here instead.)
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from papyrus_ops.runner import run_flow
from tests.support.canaries import is_canary
from tests.support.cleanup import forget_monitoring
from tests.support.evidence import assert_evidence_complete

DEMO: dict[str, dict] = {}


def canaries(sb) -> tuple[str, ...]:
    values = (sb.db_password, sb.token)
    # The session sandbox must really carry the recognisable canaries, or the sweep proves nothing.
    assert all(is_canary(v) for v in values), values
    return values


def test_the_readme_main_job_on_the_canary_sandbox(sb, capfd):
    from papyrus_ops.commands.demo import _show_routes, main_job_steps

    # The demo archives 90 days at the API's 2 requests/s; a week at 50/s proves the same.
    steps = main_job_steps("cloudtrail-archive", {"days": 7, "max_rps": 50})
    forget_monitoring(sb)
    try:
        for name, fn, params in steps:
            t0 = time.monotonic()
            DEMO[name] = run_flow(fn, env="local", **params)
            print(f"[{DEMO[name].get('verdict')}] {name} ({time.monotonic() - t0:.1f}s)")
        assert {n: r.get("verdict") for n, r in DEMO.items()} == {
            n: "success" for n, _, _ in steps}, DEMO
        for line in _show_routes(sb.settings, DEMO["deploy --image latest"]):
            print(line)
    finally:
        forget_monitoring(sb)
    out, _ = capfd.readouterr()
    print(out)  # kept for the sweep (the `sb` fixture stores what the test printed)
    [dbcheck] = [line for line in out.splitlines() if line.startswith("GET /dbcheck -> ")]
    assert dbcheck.startswith("GET /dbcheck -> 200") and "INSERT 0 1" in dbcheck, dbcheck
    for name in ("preflight", "deploy --image latest", "monitoring --apply"):
        assert_evidence_complete(sb, DEMO[name]["evidence"]["folder"])
    assert_evidence_complete(sb, DEMO["cloudtrail-archive"]["evidence"]["folder"])


def test_a_successful_deploy_logs_no_error(sb):
    """Found by this suite, fixed in 2b2d916: tasks taking boto3 clients kept Prefect's default
    cache policy; hashing the client failed and every deploy logged a page of ERROR tracebacks
    ('Error encountered when computing cache key')."""
    deployed = DEMO.get("deploy --image latest")
    if not deployed or deployed.get("verdict") != "success":
        pytest.skip("needs the demo's successful deploy")
    manifest = json.loads((Path(deployed["evidence"]["folder"]) / "manifest.json").read_text())
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(
            any_=[uuid.UUID(manifest["flow_run_id"])])))
    assert logs
    errors = [lg.message.splitlines()[0] for lg in logs if lg.level >= 40]
    assert errors == []


def test_the_sweep_is_armed_with_the_session_canaries(sb, canary_sweep):
    """The sweep itself runs after the session's last test (tests/reliability/conftest.py's
    `canary_sweep` teardown, tests/support/sweep.py); here: it is armed, with canaries that
    really are the session sandbox's recognisable ones."""
    assert canary_sweep == canaries(sb)
