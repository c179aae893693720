"""ECR's rules for a multi-arch image in the sandbox (sandbox/ecr.py): what
`docker buildx --push` leaves, how DescribeImages lists it, and the index-first push ECR
refuses."""

from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError

from sandbox import image as sandbox_image

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def test_a_buildx_push_lists_the_index_under_the_tag_and_its_manifests_untagged(sandbox):
    ecr, repo = sandbox.client("ecr"), sandbox.settings.ecr_repository
    tag = f"buildx-{uuid.uuid4().hex[:8]}"
    pushed = sandbox_image.push_index(ecr, repo, tag)
    [index] = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": tag}])[
        "imageDetails"]
    assert index["imageDigest"] == pushed["digest"]
    assert index["imageManifestMediaType"] == INDEX and "artifactMediaType" not in index
    children = [*pushed["manifests"].values(), *pushed["attestations"]]
    assert len(children) == 4  # two platforms, one provenance attestation each
    details = ecr.describe_images(repositoryName=repo,
                                  imageIds=[{"imageDigest": d} for d in children])["imageDetails"]
    assert {d["imageDigest"] for d in details} == set(children)
    for d in details:
        assert "imageTags" not in d  # untagged, as ECR lists a buildx push
        assert d["imageManifestMediaType"] == MANIFEST
        assert d["artifactMediaType"] == "application/vnd.oci.image.config.v1+json"
    [got] = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": tag}],
                                acceptedMediaTypes=[INDEX])["images"]
    doc = json.loads(got["imageManifest"])
    platforms = [(m["platform"]["os"], m["platform"]["architecture"]) for m in doc["manifests"]]
    assert platforms == [("linux", "amd64"), ("linux", "arm64"),
                         ("unknown", "unknown"), ("unknown", "unknown")]


def test_an_index_pushed_before_its_manifests_is_refused(sandbox):
    ecr, repo = sandbox.client("ecr"), sandbox.settings.ecr_repository
    missing = "sha256:" + uuid.uuid4().hex * 2
    body = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": [
        {"mediaType": MANIFEST, "digest": missing, "size": 100,
         "platform": {"os": "linux", "architecture": "amd64"}}]})
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest=body, imageTag="index-first",
                      imageManifestMediaType=INDEX)
    assert e.value.response["Error"]["Code"] == "ReferencedImagesNotFoundException"
    with pytest.raises(ClientError):
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "index-first"}])
