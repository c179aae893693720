"""Pin the image by digest: whatever the operator gave becomes `registry/repo@sha256:…`."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from botocore.exceptions import ClientError
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.image_ref import parse_image_ref


class ImageNotFound(ValueError):
    """The reference is well formed but ECR does not have it (bad input, nothing changed)."""


@dataclass(frozen=True)
class PinnedImage:
    requested: str
    repository: str
    digest: str
    uri: str  # registry/repo@sha256:...
    tags: tuple[str, ...]

    def as_dict(self) -> dict:
        return asdict(self)


@task(name="pin-image-digest", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 2, 4])
def pin_image(ecr, requested: str, repository: str, region: str) -> PinnedImage:
    """Resolve `requested` in ECR; refuse anything that cannot be resolved."""
    ref = parse_image_ref(requested, repository)
    if ref.repository != repository:
        raise ValueError(
            f"image repository {ref.repository!r} is not this environment's ({repository!r})")
    if ref.region and ref.region != region:
        raise ValueError(f"image registry region {ref.region} is not this environment's ({region})")
    image_id = {"imageDigest": ref.digest} if ref.digest else {"imageTag": ref.tag}
    try:
        repo_uri = ecr.describe_repositories(
            repositoryNames=[ref.repository])["repositories"][0]["repositoryUri"]
        details = ecr.describe_images(repositoryName=ref.repository,
                                      imageIds=[image_id])["imageDetails"]
    except ClientError as e:
        code = e.response["Error"]["Code"]
        if code == "RepositoryNotFoundException":
            raise ImageNotFound(f"ECR repository {ref.repository!r} not found") from None
        if code in ("ImageNotFoundException", "InvalidParameterException"):
            raise ImageNotFound(
                f"image {requested!r} not found in ECR {ref.repository!r}") from None
        raise
    if not details:
        raise ImageNotFound(f"image {requested!r} not found in ECR {ref.repository!r}")
    if ref.registry and not repo_uri.startswith(ref.registry + "/"):
        raise ValueError(f"image registry {ref.registry} is not this account's ({repo_uri})")
    digest = details[0]["imageDigest"]
    return PinnedImage(requested, ref.repository, digest, f"{repo_uri}@{digest}",
                       tuple(details[0].get("imageTags", [])))
