"""Parse what an operator types as "the image" into (registry, repository, tag | digest).

Accepted: a bare tag (`v1.2`), `repo:tag`, `repo@sha256:<64 hex>`, and the full ECR URI
`<account>.dkr.ecr.<region>.amazonaws.com/<repo>[:tag | @sha256:…]`. Anything else is a
`ValueError` with a one-line message. `parse_image_ref` is pure; `resolve_image` asks ECR
(read-only, through the client it is given).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from botocore.exceptions import ClientError

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPO_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
ECR_HOST_RE = re.compile(
    r"(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)"
    r"\.amazonaws\.com(?:\.cn)?"
)


@dataclass(frozen=True)
class ImageRef:
    repository: str
    tag: str | None = None
    digest: str | None = None
    registry: str | None = None  # the ECR host when a full URI was given

    @property
    def region(self) -> str | None:
        m = ECR_HOST_RE.fullmatch(self.registry or "")
        return m.group("region") if m else None

    def __str__(self) -> str:
        base = f"{self.registry}/{self.repository}" if self.registry else self.repository
        return f"{base}@{self.digest}" if self.digest else f"{base}:{self.tag}"


def parse_image_ref(text: str, default_repository: str) -> ImageRef:
    if not isinstance(text, str) or not text or text != text.strip() or len(text) > 512:
        raise ValueError(f"malformed image reference {text!r}: empty or surrounded by spaces")
    if any(c.isspace() for c in text) or not text.isascii():
        raise ValueError(f"malformed image reference {text!r}: spaces or non-ASCII characters")
    rest, registry = text, None
    first, sep, after = text.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not ECR_HOST_RE.fullmatch(first):
            raise ValueError(
                f"malformed image reference {text!r}: {first!r} is not an ECR registry")
        registry, rest = first, after
    digest = tag = None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not DIGEST_RE.fullmatch(digest):
            raise ValueError(f"malformed image reference {text!r}: digest must be sha256:<64 hex>")
    elif ":" in rest:
        rest, _, tag = rest.rpartition(":")
        if not TAG_RE.fullmatch(tag):
            raise ValueError(f"malformed image reference {text!r}: bad tag {tag!r}")
    elif registry is None and "/" not in rest:
        # A bare word is a tag of this environment's repository.
        if not TAG_RE.fullmatch(rest):
            raise ValueError(f"malformed image reference {text!r}: bad tag")
        return ImageRef(default_repository, tag=rest)
    else:
        raise ValueError(f"malformed image reference {text!r}: give a tag or a digest")
    if not REPO_RE.fullmatch(rest):
        raise ValueError(f"malformed image reference {text!r}: bad repository name {rest!r}")
    return ImageRef(rest, tag=tag, digest=digest, registry=registry)


class ImageNotFound(ValueError):
    """The reference is well formed but ECR does not have it (bad input, nothing changed)."""


# What `docker buildx --push` makes of a multi-platform build (OCI), and `docker manifest push`
# (Docker). ECR lists either as one image with this `imageManifestMediaType`, its platform
# manifests beside it as untagged images with digests of their own.
INDEX_MEDIA_TYPES = ("application/vnd.oci.image.index.v1+json",
                     "application/vnd.docker.distribution.manifest.list.v2+json")


@dataclass(frozen=True)
class PinnedImage:
    requested: str
    repository: str
    digest: str
    uri: str  # registry/repo@sha256:...
    tags: tuple[str, ...]
    media_type: str = ""  # ECR's imageManifestMediaType
    platforms: tuple[str, ...] = ()  # an image index's platforms ("linux/amd64", ...)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES

    def index_summary(self) -> dict | None:
        """`{"media_type", "platforms"}` for an image index, None for a single image."""
        if not self.is_index:
            return None
        return {"media_type": self.media_type, "platforms": list(self.platforms)}

    def as_dict(self) -> dict:
        return asdict(self)


def index_platforms(index: dict) -> tuple[str, ...]:
    """The `os/arch[/variant]` of each image an index holds (OCI image-spec, image index
    `platform`). Attestation manifests are not images: buildx stores its provenance under
    `unknown/unknown`, annotated `vnd.docker.reference.type: attestation-manifest`."""
    out: list[str] = []
    for m in index.get("manifests") or []:
        p = m.get("platform") or {}
        if ((m.get("annotations") or {}).get("vnd.docker.reference.type")
                == "attestation-manifest" or p.get("os") in (None, "unknown")):
            continue
        name = "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
        if name not in out:
            out.append(name)
    return tuple(out)


def _read_index(ecr, repository: str, digest: str, requested: str) -> dict:
    """The index manifest itself (BatchGetImage: DescribeImages does not show the platforms).
    Only asked when DescribeImages said it is an index, so a single image costs no call."""
    resp = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageDigest": digest}],
                               acceptedMediaTypes=list(INDEX_MEDIA_TYPES))
    if not resp.get("images"):
        raise ImageNotFound(f"image {requested!r} not found in ECR {repository!r}")
    try:
        doc = json.loads(resp["images"][0]["imageManifest"])
    except (KeyError, TypeError, ValueError):
        doc = {}
    return doc if isinstance(doc, dict) else {}


def resolve_image(ecr, requested: str, repository: str, region: str) -> PinnedImage:
    """Resolve `requested` in ECR (read-only); refuse anything that cannot be resolved with a
    ValueError (bad input). Plain boto3, no Prefect: the CLI answers a typo with it at once."""
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
    # A tag on a multi-arch image names the index, and so does its digest here: the index is
    # what is pinned (ECS picks the platform manifest itself, and reports the index digest;
    # tasks/rollout.py). A platform manifest's own digest can still be pinned directly.
    digest = details[0]["imageDigest"]
    media_type = details[0].get("imageManifestMediaType", "")
    platforms: tuple[str, ...] = ()
    if media_type in INDEX_MEDIA_TYPES:
        platforms = index_platforms(_read_index(ecr, ref.repository, digest, requested))
    return PinnedImage(requested, ref.repository, digest, f"{repo_uri}@{digest}",
                       tuple(details[0].get("imageTags", [])), media_type, platforms)
