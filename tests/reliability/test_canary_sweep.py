"""The canary sweep, last in tests/reliability: the README's main job (`papyrus-ops demo`:
preflight, schema init dry run + apply, deploy, the three routes, monitoring plan + apply,
CloudTrail archive)
runs in-process on the session sandbox — whose DB password and /dbcheck token ARE the canaries
(tests/conftest.py) — after the whole fault matrix ran with them. Then everything the session
produced is searched for them:

* every file under the evidence root (PAPYRUS_EVIDENCE_ROOT), hidden ones too, gzip unpacked;
* every Prefect log line, artifact, flow run and task run (state messages, parameters) read back
  through the API, and the Prefect server's own database file as a backstop;
* the captured stdout/stderr of every test and CLI subprocess of this directory.

Zero hits is the only pass. (The demo's own `papyrus-ops demo` starts a background sandbox with
a random password, which is why the same flows run here instead.)
"""

from __future__ import annotations

import gzip
import json
import os
import time
import uuid
from pathlib import Path

import pytest

from papyrus_ops.runner import run_flow
from tests.support.cleanup import forget_monitoring
from tests.support.evidence import assert_evidence_complete

PAGE = 200
DEMO: dict[str, dict] = {}


def canaries(sb) -> tuple[str, ...]:
    values = (sb.db_password, sb.token)
    # The session sandbox must really carry the recognisable canaries, or the sweep proves nothing.
    assert all(v and v.startswith("CANARY-") and v.endswith("-PAPYRUS") for v in values), values
    return values


def test_the_readme_main_job_on_the_canary_sandbox(sb, capfd):
    from flows.cloudtrail_archive import cloudtrail_archive
    from flows.deploy import deploy
    from flows.monitoring import monitoring
    from flows.preflight import preflight
    from flows.schema_init import schema_init
    from papyrus_ops.commands.demo import _show_routes

    steps = [
        ("preflight", preflight, {}),
        ("schema-init (dry run)", schema_init, {}),
        ("schema-init --apply", schema_init, {"apply": True}),
        ("deploy --image latest", deploy, {"image": "latest"}),
        ("monitoring (plan)", monitoring, {}),
        ("monitoring --apply", monitoring, {"apply": True}),
        # The demo archives 90 days at the API's 2 requests/s; a week at 50/s proves the same.
        ("cloudtrail-archive", cloudtrail_archive, {"days": 7, "max_rps": 50}),
    ]
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
    assert_evidence_complete(sb, DEMO["cloudtrail-archive"]["folder"])


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


# -- the sweep ------------------------------------------------------------------------------
def read_all_logs() -> list:
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    out, offset = [], 0
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_logs(limit=PAGE, offset=offset)
            out += page
            offset += len(page)
            if len(page) < PAGE:
                return out


def _paged(read) -> list:
    out, offset = [], 0
    while True:
        page = read(offset)
        out += page
        offset += len(page)
        if len(page) < PAGE:
            return out


def file_texts(root: Path):
    """(path, bytes) of every file under root; gzip members unpacked too."""
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        data = p.read_bytes()
        yield p, data
        if data[:2] == b"\x1f\x8b":
            yield Path(f"{p}!gunzip"), gzip.decompress(data)


def test_zz_no_canary_anywhere(sb, capture_dir):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    secrets = canaries(sb)
    needles = [s.encode() for s in secrets]
    hits: list[str] = []
    seen: dict[str, int] = {}

    def search(where: str, data: bytes | str) -> None:
        blob = data.encode("utf-8", "replace") if isinstance(data, str) else data
        hits.extend(f"{where}: {n.decode()[:14]}..." for n in needles if n in blob)

    # 1. Evidence: every file under the evidence root (and the sandbox's copy of the setting).
    roots = {Path(os.environ["PAPYRUS_EVIDENCE_ROOT"]), Path(sb.settings.evidence_root)}
    seen["evidence files"] = 0
    for root in roots:
        for path, data in file_texts(root):
            seen["evidence files"] += 1
            search(str(path), data)
    assert seen["evidence files"] > 50, seen  # the matrix and the demo wrote plenty

    # 2. Prefect, through the API: logs, artifacts, flow runs, task runs.
    logs = read_all_logs()
    seen["prefect logs"] = len(logs)
    for lg in logs:
        search(f"log {lg.flow_run_id}/{lg.task_run_id}", f"{lg.name} {lg.message}")
    with get_client(sync_client=True) as client:
        artifacts = _paged(lambda o: client.read_artifacts(limit=PAGE, offset=o))
        flow_runs = _paged(lambda o: client.read_flow_runs(limit=PAGE, offset=o))
        task_runs = _paged(lambda o: client.read_task_runs(limit=PAGE, offset=o))
    seen.update({"prefect artifacts": len(artifacts), "flow runs": len(flow_runs),
                 "task runs": len(task_runs)})
    for a in artifacts:
        search(f"artifact {a.key or a.id}", f"{a.key} {a.description} "
               f"{json.dumps(a.data, default=str)} {json.dumps(a.metadata_, default=str)}")
    for run in [*flow_runs, *task_runs]:
        state = run.state
        search(f"{type(run).__name__} {run.name} ({run.id})",
               f"{run.name} {state.name if state else ''} {state.message if state else ''} "
               f"{json.dumps(getattr(run, 'parameters', {}), default=str)}")
    assert len(logs) > 200 and artifacts and len(flow_runs) >= 20, seen
    failed = [r for r in flow_runs if r.state and r.state.is_failed()]
    assert failed, "the matrix ends runs Failed: their state messages must be searched too"

    # 3. The Prefect server's database file itself, as a backstop for anything stored.
    url = PREFECT_SERVER_DATABASE_CONNECTION_URL.value() or ""
    db = Path(url.split("///", 1)[-1]) if url.startswith("sqlite") else None
    if db and db.is_file():
        for p in (db, Path(f"{db}-wal")):
            if p.is_file():
                search(str(p), p.read_bytes())
                seen["prefect db bytes"] = seen.get("prefect db bytes", 0) + p.stat().st_size

    # 4. What every test and CLI subprocess of this directory printed.
    captures = sorted(capture_dir.glob("*.txt"))
    seen["captures"] = len(captures)
    seen["cli captures"] = len([p for p in captures if p.name.startswith("cli-")])
    for p in captures:
        search(str(p), p.read_bytes())
    assert seen["cli captures"] >= 20, seen

    print(f"canary sweep: {json.dumps(seen)}; hits: {len(hits)}")
    (capture_dir.parent / f"canary-sweep-{uuid.uuid4().hex[:6]}.json").write_text(
        json.dumps({"seen": seen, "hits": hits}, indent=2))
    assert hits == []
