"""Bad input through the real CLI (`python -m papyrus_ops ...` subprocesses on the session
sandbox): each case prints exactly one line on stderr (`papyrus-ops: error: ...`), nothing on
stdout (with --json: the bad-input result, `ground.result`'s dict, and nothing else), exits 2,
makes no mutating AWS call (the fault layer's recorder), writes no evidence, and never shows the
canary password that the broken secret carries.

The cases run once, in parallel, with the broken secret in place (module fixture); each row is
then its own test. Cases already proven in another suite (deploy: malformed image, unknown tag,
other repository, unknown env) are not repeated here: see docs/reliability.md.
"""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.cli import cli_env, error_lines, invoke, run_cli

_now = dt.datetime.now(dt.UTC).replace(microsecond=0)
T1 = (_now - dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
T2 = (_now - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

SQL = {
    "latin1.sql": "SELECT 'caf\u00e9';\n".encode("latin-1"),
    "commit.sql": b"CREATE TABLE t (x int);\nCOMMIT;\n",
}

# (id, args, what stderr must say); "{sql}" is the folder of the SQL files above.
CASES = [
    ("deploy-env-traversal", ["deploy", "--image", "latest", "--env", "../local"],
     "unknown environment"),
    ("deploy-tag-and-digest", ["deploy", "--image", "papyrus:v1@sha256:" + "a" * 64],
     "malformed image reference"),
    ("deploy-image-registry", ["deploy", "--image", "localhost:5000/papyrus:1"],
     "is not an ECR registry"),
    ("preflight-env", ["preflight", "--env", "nope"], "unknown environment"),
    ("preflight-service-dir", ["preflight", "--service-dir", "/nonexistent"],
     "no papyrus package"),
    ("schema-missing-sql", ["schema-init", "--sql", "{sql}/missing.sql"], "not found"),
    ("schema-not-utf8", ["schema-init", "--apply", "--sql", "{sql}/latin1.sql"], "not UTF-8"),
    ("schema-txn-control", ["schema-init", "--apply", "--sql", "{sql}/commit.sql"],
     "transaction control"),
    ("schema-broken-secret", ["schema-init", "--apply"], "secret papyrus/prd/db: not valid JSON"),
    ("insert-check-broken-secret", ["insert-check", "--json"],
     "secret papyrus/prd/db: not valid JSON"),
    ("schema-missing-sql-json", ["schema-init", "--sql", "{sql}/missing.sql", "--json"],
     "not found"),
    ("cloudtrail-days-91", ["cloudtrail-archive", "--days", "91"], "outside 1..90"),
    ("cloudtrail-days-text", ["cloudtrail-archive", "--days", "ninety"], "is not an integer"),
    ("cloudtrail-since-too-old", ["cloudtrail-archive", "--since", "2001-01-01T00:00:00Z"],
     "more than 90 days ago"),
    ("cloudtrail-since-not-iso", ["cloudtrail-archive", "--since", "yesterday"],
     "is not an ISO-8601 UTC time"),
    ("cloudtrail-since-after-until", ["cloudtrail-archive", "--since", T2, "--until", T1],
     "is not before until"),
    ("cloudtrail-days-and-since", ["cloudtrail-archive", "--days", "3", "--since", T1],
     "either days or since/until"),
    ("cloudtrail-max-rps-0", ["cloudtrail-archive", "--max-rps", "0"], "--max-rps"),
    ("cloudtrail-days-91-json", ["cloudtrail-archive", "--days", "91", "--json"],
     "outside 1..90"),
    ("monitoring-env", ["monitoring", "--apply", "--env", "nope"], "unknown environment"),
    ("monitoring-env-json", ["monitoring", "--env", "nope", "--json"], "unknown environment"),
    ("repair-what", ["repair", "everything", "--apply"], "unknown repair"),
    ("evidence-env", ["evidence", "upload-pending", "--env", "nope"], "unknown environment"),
    ("evidence-env-script", ["evidence", "upload-pending", "--env", "nope"],
     "unknown environment"),
    ("evidence-env-json", ["evidence", "upload-pending", "--env", "nope", "--json"],
     "unknown environment"),
    # Found by this suite, fixed in 2b2d916: Click's multi-line usage box, and inf reaching the
    # flow (time.sleep(inf) after update_service).
    ("deploy-timeout-0", ["deploy", "--image", "latest", "--timeout", "0"], "--timeout must be"),
    ("deploy-poll-0", ["deploy", "--image", "latest", "--poll", "0"], "--poll must be"),
    ("deploy-poll-nan", ["deploy", "--image", "latest", "--poll", "nan"], "--poll must be"),
    ("deploy-poll-inf", ["deploy", "--image", "latest", "--poll", "inf"], "--poll must be"),
    ("deploy-timeout-inf", ["deploy", "--image", "latest", "--timeout", "inf"],
     "--timeout must be"),
]
# The installed console script too (the rest run as `python -m papyrus_ops`).
SCRIPT_CASES = {"evidence-env-script"}


def _files(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")} if root.exists() else set()


@pytest.fixture(scope="module")
def batch(sandbox, prefect_server, main_schema, canary_sweep, capture_dir, tmp_path_factory):
    """Run every case (4 at a time) with a broken DB secret in place: not JSON, and holding
    the canary password (as a password pasted into the wrong field would)."""
    sql = tmp_path_factory.mktemp("bad-sql")
    for name, data in SQL.items():
        (sql / name).write_bytes(data)
    sm, sid = sandbox.client("secretsmanager"), sandbox.settings.db_secret_id
    original = sm.get_secret_value(SecretId=sid)["SecretString"]
    root = Path(sandbox.settings.evidence_root)
    before = _files(root)
    sm.put_secret_value(SecretId=sid, SecretString=f"password {sandbox.db_password} here")
    sandbox.faults.clear()
    sandbox.faults.reset_calls()
    env = cli_env()
    try:
        def run(case):
            args = [a.replace("{sql}", str(sql)) for a in case[1]]
            return case[0], run_cli(*args, env=env, timeout=240,
                                    script=case[0] in SCRIPT_CASES, capture_dir=capture_dir)

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = dict(pool.map(run, CASES))
        mutating = [(c.service, c.operation) for c in sandbox.faults.served(mutating=True)]
    finally:
        sm.put_secret_value(SecretId=sid, SecretString=original)
    return {"results": results, "mutating": mutating, "new_files": _files(root) - before,
            "secrets": (sandbox.db_password, sandbox.token)}


@pytest.mark.parametrize(("case", "message"), [(c[0], c[2]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(batch, case, message):
    r = batch["results"][case]
    lines = error_lines(r.stderr)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("papyrus-ops: error: ") and message in lines[0], lines[0]
    if "--json" in dict((c[0], c[1]) for c in CASES)[case]:
        from ground.result import KEYS

        out = json.loads(r.stdout)  # the bad-input result, and nothing else
        assert tuple(out) == KEYS and out["verdict"] == "bad_input", out
        assert out["reason"] == lines[0].removeprefix("papyrus-ops: error: ")
        assert out["evidence"] is None
    else:
        assert r.stdout == "", r.stdout
    for secret in batch["secrets"]:
        assert secret not in r.stdout + r.stderr


def test_bad_input_changes_nothing(batch):
    assert batch["mutating"] == []  # not one mutating AWS call across every case
    assert batch["new_files"] == set()  # no evidence written


# -- found by this suite, fixed in 2b2d916 -----------------------------------------------------
@pytest.mark.parametrize("args", [["--poll", "inf"], ["--timeout", "inf"], ["--poll", "0.01"]],
                         ids=["poll-inf", "timeout-inf", "poll-too-small"])
def test_deploy_refuses_bad_numbers_before_any_flow_runs(monkeypatch, args):
    """`--poll inf` used to reach the flow: time.sleep(inf) after update_service, a started
    rollout and no verdict."""
    import papyrus_ops.commands.deploy as deploy_cmd

    started: list[dict] = []
    monkeypatch.setattr(deploy_cmd, "run_flow",
                        lambda _flow, **params: started.append(params) or {"verdict": "success"})
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # never reached
    monkeypatch.setenv("PAPYRUS_SANDBOX_DIR", "/nonexistent")
    r = invoke("deploy", "--image", "latest", *args)
    assert started == [] and r.exit_code == 2, (started, r.output)


def test_secret_with_a_superscript_port_is_one_line_bad_input(sb, capture_dir):
    """'²'.isdigit() is True but int('²') fails: it used to escape as a plain ValueError (a
    traceback and exit 1)."""
    sm, sid = sb.client("secretsmanager"), sb.settings.db_secret_id
    original = sm.get_secret_value(SecretId=sid)["SecretString"]
    sm.put_secret_value(SecretId=sid, SecretString=json.dumps(json.loads(original)
                                                              | {"port": "\u00b2"}))
    try:
        r = run_cli("insert-check", "--env", "local", capture_dir=capture_dir)
    finally:
        sm.put_secret_value(SecretId=sid, SecretString=original)
    assert sb.db_password not in r.stderr + r.stdout
    lines = error_lines(r.stderr)
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "key port must be an integer" in lines[0]


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECS"])
def test_prd_refuses_an_exported_endpoint_override_unless_told(sb, capture_dir, monkeypatch,
                                                                variable):
    """`--env prd` runs on AWS: with an endpoint variable exported (a sandbox left in the
    shell), boto3 would send every call there. One line, exit 2, no flow run — unless
    PAPYRUS_ALLOW_ENDPOINT_URL=1 says it is meant. The flow refuses the same way (UI runs)."""
    from flows.preflight import preflight
    from papyrus_ops.runner import run_flow

    monkeypatch.setenv(variable, sb.endpoint)
    r = run_cli("preflight", "--env", "prd", capture_dir=capture_dir)
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and len(lines) == 1, (r.returncode, r.stderr)
    assert variable in lines[0] and "PAPYRUS_ALLOW_ENDPOINT_URL=1" in lines[0], lines
    res = run_flow(preflight, env="prd")
    assert res["verdict"] == "bad_input" and variable in res["reason"], res
    from ground.settings import endpoint_refusal, load_env

    prd = load_env("prd")
    assert endpoint_refusal(prd, {variable: sb.endpoint, "PAPYRUS_ALLOW_ENDPOINT_URL": "1"}) \
        is None
    assert endpoint_refusal(prd, {}) is None
    assert endpoint_refusal(load_env("local"), {variable: sb.endpoint}) is None  # the sandbox
