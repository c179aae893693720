"""Tamper-evident evidence on the session sandbox: the demo's flows write signed bundles into the
Object-Locked bucket, `papyrus-ops evidence verify` passes on every one (folder and S3; offline
with the public key, with a PEM, with kms:Verify) and fails naming the file when one byte of an
evidence file or of the manifest changes; a locked version can be neither deleted nor rewritten
in place; the sandbox's KMS signs digests as KMS does (sandbox/kms.py).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from artifacts import EvidenceBundle, signing
from artifacts import verify as check
from artifacts.storage import MANIFEST, PENDING, SIGNATURE, upload_pending
from ground.result import EXIT_CODES, KEYS
from papyrus_ops.runner import run_flow
from tests.support.cli import error_lines, run_cli
from tests.support.evidence import assert_evidence_complete


def flow_client(service: str):
    """As the flows are: the flow-run role (AWS_PROFILE from the sandbox's env)."""
    return boto3.Session().client(service)


@pytest.fixture(scope="module")
def demo(sandbox, prefect_server, main_schema) -> dict[str, dict]:
    """The demo's flows (papyrus_ops/commands/demo.py), in-process on the session sandbox;
    monitoring as a plan only (the apply is tests/monitoring's), the archive over a day."""
    from flows.cloudtrail_archive import cloudtrail_archive
    from flows.deploy import deploy
    from flows.monitoring import monitoring
    from flows.preflight import preflight
    from flows.schema_init import schema_init

    steps = {"preflight": (preflight, {}), "schema-init": (schema_init, {}),
             "schema-init --apply": (schema_init, {"apply": True}),
             "deploy": (deploy, {"image": "latest"}), "monitoring": (monitoring, {}),
             "cloudtrail-archive": (cloudtrail_archive, {"days": 1, "max_rps": 100})}
    sandbox.faults.clear()
    runs = {name: run_flow(fn, env="local", **params) for name, (fn, params) in steps.items()}
    # A plan with drift (nothing applied yet) still writes its evidence; the rest succeed.
    assert {n: r["verdict"] for n, r in runs.items() if n != "monitoring"} == dict.fromkeys(
        [n for n in steps if n != "monitoring"], "success"), runs
    for name, r in runs.items():
        assert r["evidence"] and r["evidence"]["s3_uri"], (name, r["evidence"])
    return runs


def _cli_json(*args) -> tuple[int, dict, str]:
    r = run_cli("evidence", "verify", *args, "--env", "local", "--json")
    out = json.loads(r.stdout)
    assert tuple(out) == KEYS and out["flow"] == "evidence_verify", out
    assert r.returncode == EXIT_CODES[out["verdict"]], (r.returncode, out, r.stderr)
    return r.returncode, out, r.stderr


def _flip(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if at is None else at
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


# -- every bundle the demo writes passes ---------------------------------------------------------
def test_every_demo_bundle_is_signed_uploaded_and_verifies(sandbox, demo):
    kms = flow_client("kms")
    key = sandbox.settings.evidence_signing_key
    offline = signing.PublicKeyVerifier.from_kms(kms, key)
    online = signing.KmsVerifier(kms, key)
    assert offline.key_id == sandbox.evidence_signing_key_arn  # GetPublicKey names the ARN
    s3 = flow_client("s3")
    for name, r in demo.items():
        folder = Path(r["evidence"]["folder"])
        assert_evidence_complete(sandbox, folder)  # the signature went up with the bundle
        doc = json.loads((folder / SIGNATURE).read_text())
        assert doc["key_id"] == sandbox.evidence_signing_key_arn, name
        assert (doc["signing_algorithm"], doc["message_type"]) == ("ECDSA_SHA_256", "DIGEST")
        assert doc["manifest_sha256"] == hashlib.sha256(
            (folder / MANIFEST).read_bytes()).hexdigest()
        bucket, prefix = check.parse_s3_uri(r["evidence"]["s3_uri"])
        for verifier in (offline, online):
            for report in (check.verify_folder(folder, verifier, require_signature=True),
                           check.verify_s3(s3, bucket, prefix, verifier,
                                           require_signature=True)):
                assert report.ok, (name, report.problems)
                assert [b.signature for b in report.bundles] == ["valid"], name
        remote = check.verify_s3(s3, bucket, prefix, offline).bundles[0]
        assert set(remote.versions) == {*(f["name"] for f in json.loads(
            (folder / MANIFEST).read_text())["files"]), MANIFEST, SIGNATURE}


def test_the_cli_verifies_folder_s3_pem_and_kms(sandbox, demo, tmp_path):
    ev = demo["deploy"]["evidence"]
    pem = tmp_path / "evidence-signing.pem"
    from cryptography.hazmat.primitives import serialization

    der = flow_client("kms").get_public_key(KeyId=sandbox.settings.evidence_signing_key)
    pem.write_bytes(serialization.load_der_public_key(der["PublicKey"]).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    for args in ([ev["folder"]], [ev["s3_uri"]], [ev["folder"], "--public-key", pem],
                 [ev["s3_uri"], "--kms"]):
        code, out, stderr = _cli_json(*args)
        assert code == 0, (args, out, stderr)
        assert [b["signature"] for b in out["data"]["bundles"]] == ["valid"], (args, out)
        assert out["data"]["problems"] == [] and out["evidence"] is None
    # Several bundles in one call: every manifest.json below the folder.
    tree = tmp_path / "tree"
    for name in ("preflight", "deploy", "cloudtrail-archive"):
        shutil.copytree(demo[name]["evidence"]["folder"], tree / name / "bundle")
    code, out, _ = _cli_json(tree)
    assert code == 0 and [b["signature"] for b in out["data"]["bundles"]] == ["valid"] * 3, out


# -- one byte changed ----------------------------------------------------------------------------
def test_one_byte_of_an_evidence_file_fails_naming_the_file(demo, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(demo["deploy"]["evidence"]["folder"], copy)
    victim = sorted(p for p in copy.iterdir() if p.suffix == ".json" and p.name not in (
        MANIFEST, SIGNATURE))[0]
    _flip(victim)
    code, out, stderr = _cli_json(copy)
    assert code == 1 and out["verdict"] == "failed"
    assert [p for p in out["data"]["problems"] if victim.name in p], out["data"]["problems"]
    assert all(victim.name in p for p in out["data"]["problems"]), out["data"]["problems"]
    assert victim.name in out["reason"]
    # The manifest itself is untouched: its signature still holds.
    assert out["data"]["bundles"][0]["signature"] == "valid"
    human = run_cli("evidence", "verify", copy, "--env", "local")
    assert human.returncode == 1 and f"MISMATCH {copy}/{victim.name}: sha256" in human.stderr


def test_one_byte_of_the_manifest_fails_naming_manifest_and_signature(demo, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(demo["preflight"]["evidence"]["folder"], copy)
    text = (copy / MANIFEST).read_text()
    # A byte that keeps the JSON readable and changes what it says: the verdict's first letter.
    at = text.index('"verdict": "') + len('"verdict": "')
    _flip(copy / MANIFEST, at)
    code, out, _ = _cli_json(copy)
    problems = out["data"]["problems"]
    assert code == 1 and out["data"]["bundles"][0]["signature"] == "invalid", out
    assert any(f"{MANIFEST}: sha256" in p and "!= signed" in p for p in problems), problems
    assert any(f"{SIGNATURE}: the signature does not verify" in p for p in problems), problems


def test_a_rewritten_signature_or_a_foreign_key_fails(sandbox, demo, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(demo["preflight"]["evidence"]["folder"], copy)
    verifier = signing.PublicKeyVerifier.from_kms(flow_client("kms"),
                                                  sandbox.settings.evidence_signing_key)
    doc = json.loads((copy / SIGNATURE).read_text())
    sig = bytearray(base64.b64decode(doc["signature"]))
    sig[-1] ^= 0x01
    (copy / SIGNATURE).write_text(json.dumps({**doc, "signature": base64.b64encode(
        bytes(sig)).decode()}))
    report = check.verify_folder(copy, verifier)
    assert not report.ok and report.bundles[0].signature == "invalid", report.problems
    # Signed by another key (an attacker's own): named, whatever its signature says.
    (copy / SIGNATURE).write_text(json.dumps({**doc, "key_id": doc["key_id"][:-4] + "beef"}))
    report = check.verify_folder(copy, verifier)
    assert any("signed by" in p and "expected" in p for p in report.problems), report.problems
    (copy / SIGNATURE).unlink()
    report = check.verify_folder(copy, verifier, require_signature=True)
    assert report.problems == [f"{copy}/{SIGNATURE}: missing (the manifest is not signed)"]
    unsigned = check.verify_folder(copy, verifier)
    assert unsigned.ok and unsigned.bundles[0].signature == "unsigned"


def test_a_tampered_object_in_s3_fails_naming_it(sandbox, demo):
    """An overwrite in the bucket (a new version on top of the locked one) is what verify sees
    and names; the locked original stays and is still the bundle's."""
    admin = sandbox.client("s3")
    ev = demo["deploy"]["evidence"]
    bucket, prefix = check.parse_s3_uri(ev["s3_uri"])
    copy = f"tests/verify-tamper-{uuid.uuid4().hex[:8]}/"
    names = [f["name"] for f in json.loads((Path(ev["folder"]) / MANIFEST).read_text())["files"]]
    for rel in [*names, MANIFEST, SIGNATURE]:
        admin.put_object(Bucket=bucket, Key=copy + rel, Body=admin.get_object(
            Bucket=bucket, Key=prefix + rel)["Body"].read(), ServerSideEncryption="aws:kms",
            SSEKMSKeyId=sandbox.evidence_kms_key)
    verifier = signing.PublicKeyVerifier.from_kms(flow_client("kms"),
                                                  sandbox.settings.evidence_signing_key)
    s3 = flow_client("s3")
    assert check.verify_s3(s3, bucket, copy, verifier).ok
    body = bytearray(admin.get_object(Bucket=bucket, Key=copy + names[0])["Body"].read())
    body[0] ^= 0x01
    admin.put_object(Bucket=bucket, Key=copy + names[0], Body=bytes(body),
                     ServerSideEncryption="aws:kms", SSEKMSKeyId=sandbox.evidence_kms_key)
    report = check.verify_s3(s3, bucket, copy, verifier)
    assert [p.rsplit("/", 1)[-1].split(":")[0] for p in report.problems] == [names[0]]
    admin.put_object(Bucket=bucket, Key=copy + "extra.log", Body=b"planted",
                     ServerSideEncryption="aws:kms", SSEKMSKeyId=sandbox.evidence_kms_key)
    report = check.verify_s3(s3, bucket, copy, verifier)
    assert any(p.endswith("extra.log: not listed in manifest") for p in report.problems)


# -- Object Lock ---------------------------------------------------------------------------------
def test_the_evidence_bucket_locks_every_version(sandbox, demo):
    s = sandbox.settings
    admin = sandbox.client("s3")
    conf = admin.get_object_lock_configuration(Bucket=s.evidence_bucket)[
        "ObjectLockConfiguration"]
    retention = conf["Rule"]["DefaultRetention"]
    assert conf["ObjectLockEnabled"] == "Enabled"
    assert (retention["Mode"], retention["Days"]) == ("GOVERNANCE", s.evidence_retention_days)
    bucket, prefix = check.parse_s3_uri(demo["deploy"]["evidence"]["s3_uri"])
    head = admin.head_object(Bucket=bucket, Key=prefix + MANIFEST)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert timedelta(hours=23) < until - datetime.now(UTC) <= timedelta(days=1)


def test_a_locked_version_cannot_be_deleted_or_rewritten(sandbox, demo):
    s = sandbox.settings
    admin, flow_s3 = sandbox.client("s3"), flow_client("s3")
    bucket, prefix = check.parse_s3_uri(demo["deploy"]["evidence"]["s3_uri"])
    key = prefix + MANIFEST
    version = admin.head_object(Bucket=bucket, Key=key)["VersionId"]
    original = admin.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read()
    # The flow-run role may not delete versions at all (IAM: s3:DeleteObjectVersion) ...
    with pytest.raises(ClientError, match="s3:DeleteObjectVersion"):
        flow_s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
    # ... and even an identity allowed everything meets the lock, without or with a retention
    # shortened first (governance needs the explicit bypass).
    with pytest.raises(ClientError) as denied:
        admin.delete_object(Bucket=bucket, Key=key, VersionId=version)
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as shorten:
        admin.put_object_retention(Bucket=bucket, Key=key, VersionId=version, Retention={
            "Mode": "GOVERNANCE", "RetainUntilDate": datetime.now(UTC) + timedelta(minutes=1)})
    assert shorten.value.response["Error"]["Code"] == "AccessDenied"
    # Rewriting the key adds a version on top; the locked one keeps its bytes (here: on a copy,
    # so the demo's bundle keeps one version per key).
    probe = f"tests/lock-probe-{uuid.uuid4().hex[:8]}.json"
    kms = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": sandbox.evidence_kms_key}
    first = admin.put_object(Bucket=bucket, Key=probe, Body=original, **kms)["VersionId"]
    second = admin.put_object(Bucket=bucket, Key=probe, Body=b"rewritten", **kms)["VersionId"]
    assert first != second
    assert admin.get_object(Bucket=bucket, Key=probe, VersionId=first)["Body"].read() == original
    with pytest.raises(ClientError, match="AccessDenied"):
        admin.delete_object(Bucket=bucket, Key=probe, VersionId=first)
    # Deleting the key only hides it behind a delete marker; the version is still there.
    assert admin.delete_object(Bucket=bucket, Key=probe)["DeleteMarker"] is True
    assert admin.get_object(Bucket=bucket, Key=probe, VersionId=first)["Body"].read() == original
    # Governance mode: who holds s3:BypassGovernanceRetention and says so may remove a version.
    admin.delete_object(Bucket=bucket, Key=probe, VersionId=second,
                        BypassGovernanceRetention=True)
    flow_run = sandbox.principals["flow-run"].policy
    sandbox.put_policy("flow-run", {**flow_run, "Statement": [*flow_run["Statement"], {
        "Sid": "TestDeleteVersions", "Effect": "Allow", "Action": ["s3:DeleteObjectVersion"],
        "Resource": f"arn:aws:s3:::{s.evidence_bucket}/tests/*"}]})
    try:
        with pytest.raises(ClientError, match="s3:BypassGovernanceRetention"):
            flow_s3.delete_object(Bucket=bucket, Key=probe, VersionId=first,
                                  BypassGovernanceRetention=True)
        with pytest.raises(ClientError, match="AccessDenied"):
            flow_s3.delete_object(Bucket=bucket, Key=probe, VersionId=first)
    finally:
        sandbox.restore_policy("flow-run")
    assert admin.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read() == original


# -- the sandbox's KMS signs digests as KMS does -------------------------------------------------
def test_kms_signs_the_digest_and_refuses_a_bad_signature(sandbox):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    kms, key = flow_client("kms"), sandbox.settings.evidence_signing_key
    digest = hashlib.sha256(b"evidence").digest()
    signed = kms.sign(KeyId=key, Message=digest, MessageType="DIGEST",
                      SigningAlgorithm="ECDSA_SHA_256")
    assert signed["KeyId"] == sandbox.evidence_signing_key_arn
    public = load_der_public_key(kms.get_public_key(KeyId=key)["PublicKey"])
    public.verify(signed["Signature"], digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    assert kms.verify(KeyId=key, Message=digest, MessageType="DIGEST",
                      Signature=signed["Signature"],
                      SigningAlgorithm="ECDSA_SHA_256")["SignatureValid"] is True
    with pytest.raises(ClientError) as bad:
        kms.verify(KeyId=key, Message=hashlib.sha256(b"other").digest(), MessageType="DIGEST",
                   Signature=signed["Signature"], SigningAlgorithm="ECDSA_SHA_256")
    assert bad.value.response["Error"]["Code"] == "KMSInvalidSignatureException"
    with pytest.raises(ClientError, match="Digest is invalid length"):
        kms.sign(KeyId=key, Message=b"short", MessageType="DIGEST",
                 SigningAlgorithm="ECDSA_SHA_256")


# -- signing fails: the bundle waits, then upload-pending signs it --------------------------------
def test_a_refused_sign_leaves_the_bundle_pending_until_upload_pending_signs_it(sandbox,
                                                                                tmp_path):
    from ground.iam import without_action

    settings = dataclasses.replace(sandbox.settings, evidence_root=tmp_path / "evidence")
    bundle = EvidenceBundle.open(settings, "verify-test")
    bundle.write_text("note", "signed later\n")
    s3, kms = flow_client("s3"), flow_client("kms")
    sandbox.put_policy("flow-run", without_action(sandbox.principals["flow-run"].policy,
                                                  "kms:Sign"))
    try:
        res = bundle.finish("pass", s3=s3, kms=kms)
    finally:
        sandbox.restore_policy("flow-run")
    assert res.pending and res.s3_uri is None and "kms:Sign" in res.pending_reason
    marker = json.loads((bundle.folder / PENDING).read_text())
    assert marker["signing_key"] == settings.evidence_signing_key
    assert not (bundle.folder / SIGNATURE).exists()
    done = upload_pending(settings.evidence_root, lambda region=None: flow_client("s3"),
                          lambda region=None: flow_client("kms"))
    assert [status for _, status in done] == ["uploaded: 3 objects"], done
    verifier = signing.PublicKeyVerifier.from_kms(kms, settings.evidence_signing_key)
    assert check.verify_folder(bundle.folder, verifier, require_signature=True).ok
    assert check.verify_s3(s3, settings.evidence_bucket, bundle.key_prefix, verifier,
                           require_signature=True).ok
    assert_evidence_complete(sandbox, bundle.folder)


# -- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "says"), [
    (["/nonexistent/evidence"], "not a folder"),
    (["s3://"], "expected s3://<bucket>/<prefix>/"),
    (["{empty}"], "no manifest.json in it or below it"),
    (["{empty}", "--public-key", "{empty}/missing.pem"], "not a readable PEM public key"),
    (["{empty}", "--public-key", "x.pem", "--kms"], "choose one"),
])
def test_bad_input_is_one_line_and_exit_2(sandbox, tmp_path, args, says):
    (tmp_path / "empty").mkdir()
    words = [a.replace("{empty}", str(tmp_path / "empty")) for a in args]
    r = run_cli("evidence", "verify", *words, "--env", "local")
    assert r.returncode == 2 and r.stdout == "", (r.stdout, r.stderr)
    [line] = error_lines(r.stderr)
    assert line.startswith("papyrus-ops: error: ") and says in line, line
    j = run_cli("evidence", "verify", *words, "--env", "local", "--json")
    assert j.returncode == 2 and json.loads(j.stdout)["verdict"] == "bad_input"
