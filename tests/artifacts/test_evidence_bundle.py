"""EvidenceBundle on disk: names, redaction of every file kind, context and checks, manifest
hashes (and tamper detection), UTC start/finish, no upload without a bucket."""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from artifacts import EvidenceBundle, verify_manifest
from ground.redact import MARK

SEED_NAMES = ["schema_dryrun_exec", "schema_apply_exec", "papyrus_psql_insert_cli",
              "papyrus_psql_insert_app", "running_image", "flask_url_map_after"]


def test_folder_and_file_names_follow_the_seed(local_settings):
    run_id = str(uuid.uuid4())
    before = datetime.now(UTC).replace(microsecond=0)
    b = EvidenceBundle.open(local_settings, "deploy", run_id=run_id)
    assert re.fullmatch(r"\d{8}T\d{6}Z", b.ts)
    assert b.folder == local_settings.evidence_root / "deploy" / f"{b.ts}_{run_id[:8]}"
    assert b.folder.is_dir()
    assert b.key_prefix == f"deploy/{b.ts}_{run_id[:8]}/"
    assert before <= datetime.strptime(b.ts, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    for name in SEED_NAMES:
        assert b.write_text(name, "ok\n").name == f"{b.ts}_{name}.log"
    assert b.write_json("rds_sg_inbound_after", []).name == f"{b.ts}_rds_sg_inbound_after.json"
    assert b.path("x.y-z_1", "jsonl.gz").name == f"{b.ts}_x.y-z_1.jsonl.gz"


@pytest.mark.parametrize("bad", ["../escape", "a/b", "a\\b", "..", "a..b", "", "Upper",
                                 "-lead", "_lead", ".hidden", "sp ace", "/abs"])
def test_bad_names_are_rejected(local_settings, bad):
    b = EvidenceBundle.open(local_settings, "deploy")
    with pytest.raises(ValueError):
        b.write_text(bad, "x")
    if bad != "Upper":  # whole file names may carry a timestamp (…_20251021T101500Z.jsonl.gz)
        with pytest.raises(ValueError):
            b.add_file(Path(__file__), name=bad)
    with pytest.raises(ValueError):
        EvidenceBundle.open(local_settings, bad or "..")
    assert [p.name for p in b.folder.iterdir()] == []
    with pytest.raises(ValueError):
        b.path("ok", ext="../log")


def test_evidence_root_inside_a_package_is_refused(local_settings):
    import artifacts

    pkg = Path(artifacts.__file__).parent
    with pytest.raises(ValueError, match="inside the Python package"):
        EvidenceBundle.open(dataclasses.replace(local_settings, evidence_root=pkg / "ev"), "deploy")


def test_run_id_defaults_to_a_uuid_outside_flows(local_settings):
    b = EvidenceBundle.open(local_settings, "preflight")
    assert uuid.UUID(b.run_id).version == 4
    assert b.folder.name == f"{b.ts}_{b.run_id[:8]}"
    # Same flow, same second, same run id: a second bundle never overwrites the first.
    again = EvidenceBundle.open(local_settings, "preflight", run_id=b.run_id)
    assert again.folder != b.folder


def test_everything_written_is_redacted(local_settings, canary):
    b = EvidenceBundle.open(local_settings, "schema_init")
    b.write_text("schema_apply_exec", f"PGPASSWORD={canary} psql\nconnect postgresql://p:"
                                      f"{canary}@db/papyrus\nCOMMIT\n")
    # A secret split across two appends is still caught (the whole file is re-checked).
    half = len(canary) // 2
    b.append_text("papyrus_psql_insert_cli", f"INSERT 0 1 {canary[:half]}")
    b.append_text("papyrus_psql_insert_cli", f"{canary[half:]} done\n")
    b.write_json("secret_before", {"SecretString": json.dumps({"password": canary}),
                                   "Name": "papyrus/prd/db", "note": f"pw {canary}",
                                   "when": datetime(2025, 10, 21, tzinfo=UTC)})
    b.set_context(image_digest="sha256:" + "b" * 64, environment="local",
                  dsn=f"postgresql://papyrus:{canary}@db/papyrus")
    b.add_check("secret.password", "present", canary, "pass")
    # Registered after the file was written: caught at finish.
    late = "LATE-secret-" + uuid.uuid4().hex
    b.write_text("late", f"value {late}\n")
    from ground.redact import REDACTOR

    REDACTOR.add(late)
    res = b.finish("pass")
    for p in res.folder.rglob("*"):
        if p.is_file():
            text = p.read_text()
            assert canary not in text and late not in text, p.name
            assert canary[:half] + canary[half:] not in text
    manifest = json.loads(res.manifest.read_text())
    assert manifest["context"]["dsn"] == f"postgresql://papyrus:{MARK}@db/papyrus"
    assert manifest["checks"] == [{"check": "secret.password", "expected": "present",
                                   "actual": MARK, "verdict": "pass"}]
    doc = json.loads(b.path("secret_before", "json").read_text())
    assert doc["SecretString"] == MARK and doc["Name"] == "papyrus/prd/db"
    assert doc["when"].startswith("2025-10-21")
    assert verify_manifest(res.folder) == []


def test_manifest_content_hashes_and_utc(local_settings, tmp_path):
    b = EvidenceBundle.open(local_settings, "deploy")
    b.write_text("running_image", "repo@sha256:abc\n")
    gz = tmp_path / "cloudtrail_events_20251021T101500Z.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.write('{"eventID": "1"}\n')
    added = b.add_file(gz)
    assert added.read_bytes() == gz.read_bytes()  # binary, as-is
    b.set_context(image_digest="sha256:" + "c" * 64,
                  task_definition_arn="arn:aws:ecs:us-west-2:123456789012:task-definition/"
                                      "papyrus-task:40",
                  deployment_id="ecs-svc/123")
    b.add_check("rollout", "COMPLETED", "COMPLETED", "pass")
    b.add_check("running_count", 1, 0, "fail")
    with pytest.raises(ValueError):
        b.add_check("x", 1, 1, "maybe")
    res = b.finish("fail")
    assert res.verdict == "fail" and not res.pending and res.s3_uri is None
    assert res.uploaded == []
    m = json.loads(res.manifest.read_text())
    assert {"flow", "flow_run_id", "environment", "started_at", "finished_at", "verdict",
            "context", "checks", "files"} <= set(m)
    assert m["flow"] == "deploy" and m["flow_run_id"] == b.run_id
    assert m["environment"] == local_settings.env == m["context"]["environment"]
    assert m["verdict"] == "fail"
    assert m["context"]["image_digest"] == "sha256:" + "c" * 64
    assert m["context"]["task_definition_arn"].endswith("papyrus-task:40")
    assert m["context"]["deployment_id"] == "ecs-svc/123"
    assert [c["verdict"] for c in m["checks"]] == ["pass", "fail"]
    started = datetime.strptime(m["started_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    finished = datetime.strptime(m["finished_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert started <= finished <= datetime.now(UTC)
    assert datetime.now(UTC) - started < timedelta(minutes=1)
    assert started.strftime("%Y%m%dT%H%M%SZ") == b.ts
    names = [f["name"] for f in m["files"]]
    assert names == sorted([f"{b.ts}_running_image.log", gz.name])
    assert "manifest.json" not in names
    import hashlib

    for f in m["files"]:
        data = (res.folder / f["name"]).read_bytes()
        assert f["sha256"] == hashlib.sha256(data).hexdigest() and f["size"] == len(data)
    assert res.manifest_sha256 == hashlib.sha256(res.manifest.read_bytes()).hexdigest()


def test_verify_manifest_detects_tampering(local_settings):
    b = EvidenceBundle.open(local_settings, "deploy")
    log = b.write_text("running_image", "repo@sha256:abc\n")
    js = b.write_json("rds_sg_inbound_after", [{"GroupId": "sg-1"}])
    res = b.finish("pass")
    assert verify_manifest(res.folder) == []
    original = log.read_bytes()
    log.write_bytes(original.replace(b"abc", b"abd"))  # same size, other bytes
    problems = verify_manifest(res.folder)
    assert len(problems) == 1 and "sha256" in problems[0] and log.name in problems[0]
    log.write_bytes(original + b"x")
    assert any("size" in p for p in verify_manifest(res.folder))
    log.write_bytes(original)
    js.unlink()
    assert verify_manifest(res.folder) == [f"{js.name}: missing"]
    js.write_text("[]")
    (res.folder / "smuggled.log").write_text("x")
    problems = verify_manifest(res.folder)
    assert any("smuggled.log: not listed" in p for p in problems)
    res.manifest.write_text("{not json")
    assert "unreadable" in verify_manifest(res.folder)[0]


def test_explicit_key_prefix_and_folder_for_cloudtrail(local_settings):
    b = EvidenceBundle.open(local_settings, "cloudtrail", folder_name="20251021T101500Z",
                            key_prefix="docs/evidence/cloudtrail/20251021T101500Z")
    assert b.folder == local_settings.evidence_root / "cloudtrail" / "20251021T101500Z"
    assert b.key_prefix == "docs/evidence/cloudtrail/20251021T101500Z/"
    # Reopening the same folder resumes it.
    b.write_text("progress", "1\n")
    again = EvidenceBundle.open(local_settings, "cloudtrail", folder_name="20251021T101500Z")
    assert again.folder == b.folder and any(again.folder.iterdir())
