"""S3 storage against moto over HTTP: byte-for-byte objects, SSE-KMS, checksums and metadata,
idempotent re-uploads (no new object version), and a real S3 outage during finish that
upload_pending later completes exactly once."""

from __future__ import annotations

import base64
import hashlib
import json
import logging

import boto3
import pytest

from artifacts import EvidenceBundle, mark_pending, upload_bundle, upload_pending, verify_manifest
from artifacts.storage import PENDING, UploadVerificationError, upload_file
from tests.support.evidence import make_s3, versions


def _bundle(settings, canary=None, flow="deploy"):
    b = EvidenceBundle.open(settings, flow)
    b.write_text("running_image", "1234.dkr.ecr.us-west-2.amazonaws.com/papyrus@sha256:"
                                  + "d" * 64 + "\n")
    b.write_text("papyrus_psql_insert_app", '{"tag": "INSERT 0 1"}\n'
                 + (f"password={canary}\n" if canary else ""))
    b.write_json("rds_sg_inbound_after", [{"IpProtocol": "tcp", "FromPort": 5432,
                                           "UserIdGroupPairs": [{"GroupId": "sg-task"}]}])
    (b.folder / "raw.bin").write_bytes(bytes(range(256)) * 40)  # binary, odd size
    b.set_context(image_digest="sha256:" + "d" * 64)
    return b


def _local_files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")}


def test_finish_uploads_byte_for_byte_with_kms(evidence_settings, s3, bucket, canary):
    b = _bundle(evidence_settings, canary)
    res = b.finish("pass", s3=s3)
    assert not res.pending and res.s3_uri == f"s3://{bucket}/{b.key_prefix}"
    local = _local_files(res.folder)
    assert sorted(res.uploaded) == sorted(b.key_prefix + k for k in local)
    assert res.uploaded[-1] == b.key_prefix + "manifest.json"  # manifest last
    for name, data in local.items():
        key = b.key_prefix + name
        obj = s3.get_object(Bucket=bucket, Key=key)
        assert obj["Body"].read() == data, name
        assert obj["ServerSideEncryption"] == "aws:kms"
        assert obj["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
        head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        assert head["ChecksumSHA256"] == base64.b64encode(
            hashlib.sha256(data).digest()).decode()
        assert canary.encode() not in data
    assert not (res.folder / PENDING).exists()
    # The uploaded manifest describes the uploaded files.
    manifest = json.loads(local["manifest.json"])
    assert {f["name"] for f in manifest["files"]} == set(local) - {"manifest.json"}
    assert manifest["bucket"] == bucket and manifest["key_prefix"] == b.key_prefix


def test_uploading_again_adds_no_object_version(evidence_settings, s3, bucket):
    b = _bundle(evidence_settings)
    res = b.finish("pass", s3=s3)
    before = versions(s3, bucket)
    assert len(before) == len(res.uploaded)
    again = b.finish("pass", s3=s3)  # nothing changed: same manifest, nothing re-uploaded
    assert again.uploaded == res.uploaded and again.manifest_sha256 == res.manifest_sha256
    assert upload_bundle(res.folder, bucket, b.key_prefix, s3) == res.uploaded
    assert upload_pending(evidence_settings.evidence_root, lambda region: s3) == []
    assert versions(s3, bucket) == before
    # A real change produces exactly one new version per changed object.
    b.write_text("late_note", "added after the first finish\n")
    res3 = b.finish("pass", s3=s3)
    after = versions(s3, bucket)
    new = sorted(set(after) - set(before))
    assert [k for k, _ in new] == sorted([b.key_prefix + "manifest.json",
                                          b.key_prefix + b.path("late_note").name])
    assert verify_manifest(res3.folder) == []


def test_finish_receives_its_client_and_never_builds_one(evidence_settings, s3, bucket):
    """A bundle with a bucket is given the s3 client to upload with (it used to build its own
    from ground.aws — with whatever credentials the process had, not the flow's)."""
    b = _bundle(evidence_settings)
    with pytest.raises(ValueError, match="needs the s3 client"):
        b.finish("warn")
    res = b.finish("warn", s3=s3)
    assert not res.pending and len(res.uploaded) == 5


def test_s3_outage_during_finish_then_upload_pending_exactly_once(
        evidence_settings, s3, bucket, dead_endpoint, canary, caplog):
    b = _bundle(evidence_settings, canary)
    dead = make_s3(dead_endpoint, attempts=1)
    with caplog.at_level(logging.WARNING):
        res = b.finish("fail", s3=dead)  # must not raise
    assert res.pending and res.s3_uri is None and res.uploaded == []
    assert "EndpointConnectionError" in res.pending_reason
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("pending" in m and str(res.folder) in m for m in warning)
    # Nothing lost: the bundle is complete and intact on disk.
    assert verify_manifest(res.folder) == []
    marker = json.loads((res.folder / PENDING).read_text())
    assert marker["bucket"] == bucket and marker["key_prefix"] == b.key_prefix
    assert marker["region"] == evidence_settings.region and marker["at"].endswith("Z")
    assert "\n" not in marker["reason"] and canary not in marker["reason"]
    assert versions(s3, bucket) == []
    # Still down: the marker stays, with the attempt counted.
    out = upload_pending(evidence_settings.evidence_root, lambda region: dead)
    assert [(f, s.split(":")[0]) for f, s in out] == [(res.folder, "failed")]
    assert json.loads((res.folder / PENDING).read_text())["attempts"] == 2
    # Back up: completed, marker gone; running it again does nothing.
    regions = []
    out = upload_pending(evidence_settings.evidence_root,
                         lambda region: regions.append(region) or s3)
    assert out == [(res.folder, "uploaded: 5 objects")] and regions == ["us-west-2"]
    assert not (res.folder / PENDING).exists()
    assert upload_pending(evidence_settings.evidence_root, lambda region: s3) == []
    got = versions(s3, bucket)
    assert sorted(k for k, _ in got) == sorted(b.key_prefix + n for n in _local_files(res.folder))
    assert len(got) == len({k for k, _ in got})  # exactly one version per object
    for name, data in _local_files(res.folder).items():
        assert s3.get_object(Bucket=bucket, Key=b.key_prefix + name)["Body"].read() == data


def test_outage_in_the_middle_of_an_upload(evidence_settings, bucket, s3):
    """S3 goes away after two objects: the retry uploads the rest and re-writes nothing."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    flaky = make_s3(f"http://{host}:{port}", attempts=1)
    puts = []

    def after_put(**kwargs):
        puts.append(kwargs)
        if len(puts) == 2:
            server.stop()  # a real outage: the port stops answering

    flaky.meta.events.register("after-call.s3.PutObject", after_put)
    b = _bundle(evidence_settings)
    res = b.finish("pass", s3=flaky)
    assert res.pending and (res.folder / PENDING).exists()
    partial = versions(s3, bucket)  # moto's state is shared in-process: the same bucket
    assert len(partial) == 2  # the 2nd put landed, its verification met the outage
    out = upload_pending(evidence_settings.evidence_root, lambda: s3)  # zero-arg factory works
    assert out == [(res.folder, "uploaded: 5 objects")]
    got = versions(s3, bucket)
    assert len(got) == 5 and len({k for k, _ in got}) == 5
    assert set(partial) <= set(got)


def test_verification_is_strict(evidence_settings, s3, bucket, tmp_path):
    """An object under our key with other bytes is replaced (new version), never trusted;
    an object that claims our sha256 in its metadata but holds other bytes is caught."""
    f = tmp_path / "evidence.log"
    f.write_bytes(b"the real evidence\n")
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    s3.put_object(Bucket=bucket, Key="x/evidence.log", Body=b"other bytes",
                  ServerSideEncryption="aws:kms")
    assert upload_file(f, bucket, "x/evidence.log", s3) is True
    assert s3.get_object(Bucket=bucket, Key="x/evidence.log")["Body"].read() == f.read_bytes()
    # A lying object (right metadata and size, wrong bytes) written by someone else is not
    # trusted as "already present": it is replaced, and the new version holds our bytes.
    s3.put_object(Bucket=bucket, Key="y/evidence.log", Body=b"THE REAL EVIDENCE\n",
                  ServerSideEncryption="aws:kms", Metadata={"sha256": digest})
    assert upload_file(f, bucket, "y/evidence.log", s3) is True
    assert s3.get_object(Bucket=bucket, Key="y/evidence.log")["Body"].read() == f.read_bytes()
    assert upload_file(f, bucket, "y/evidence.log", s3) is False
    # Head checks alone would pass an object whose metadata, size and (unvalidated, as in moto)
    # checksum all claim our file: the read-back catches it.
    b64 = base64.b64encode(bytes.fromhex(digest)).decode()
    put = s3.put_object(Bucket=bucket, Key="w/evidence.log", Body=b"THE REAL EVIDENCE\n",
                        ServerSideEncryption="aws:kms", Metadata={"sha256": digest},
                        ChecksumSHA256=b64)
    from artifacts import storage

    with pytest.raises(UploadVerificationError, match="stored bytes differ"):
        storage._verify(s3, bucket, "w/evidence.log", f, digest, b64, f.stat().st_size,
                        put["VersionId"])
    # Unencrypted objects are not accepted as already present.
    plain = make_s3(s3.meta.endpoint_url)
    plain_bucket = bucket + "-plain"
    plain.create_bucket(Bucket=plain_bucket,
                        CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    plain.put_object(Bucket=plain_bucket, Key="z/evidence.log", Body=f.read_bytes(),
                     Metadata={"sha256": digest})
    with pytest.raises(UploadVerificationError, match="expected .aws:kms."):
        upload_file(f, plain_bucket, "z/evidence.log", plain)


def test_mark_pending_reads_the_manifest(local_settings, canary):
    b = _bundle(local_settings)
    res = b.finish("pass")
    assert not res.pending and res.uploaded == []
    # The manifest records no bucket: mark_pending needs one.
    with pytest.raises(ValueError):
        mark_pending(res.folder, "x")
    mark_pending(res.folder, f"boom\npassword={canary}\nline3", bucket="bkt", region="us-west-2")
    marker = json.loads((res.folder / PENDING).read_text())
    assert marker["reason"] == "boom password=*** line3"
    assert marker["key_prefix"] == b.key_prefix and marker["bucket"] == "bkt"


def test_an_upload_names_the_bucket_key_and_the_stored_object_is_checked_against_it(
        evidence_settings, s3, bucket, tmp_path):
    """With the bucket's customer key configured, the upload names it (S3 reads `aws:kms`
    without a key id as aws/s3) and the check after upload compares the stored key id."""
    kms = boto3.Session().client("kms", endpoint_url=s3.meta.endpoint_url, region_name="us-west-2",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    key = kms.create_key()["KeyMetadata"]["Arn"]
    other = kms.create_key()["KeyMetadata"]["Arn"]
    f = tmp_path / "evidence.log"
    f.write_text("evidence\n")
    assert upload_file(f, bucket, "k/evidence.log", s3, kms_key=key)
    head = s3.head_object(Bucket=bucket, Key="k/evidence.log")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == key
    # Already there, but under another key: not accepted as the evidence.
    with pytest.raises(UploadVerificationError, match="expected"):
        upload_file(f, bucket, "k/evidence.log", s3, kms_key=other)
