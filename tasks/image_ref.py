"""Parse what an operator types as "the image" into (registry, repository, tag | digest).

Accepted: a bare tag (`v1.2`), `repo:tag`, `repo@sha256:<64 hex>`, and the full ECR URI
`<account>.dkr.ecr.<region>.amazonaws.com/<repo>[:tag | @sha256:…]`. Anything else is a
`ValueError` with a one-line message. `parse_image_ref` is pure; `resolve_image` asks ECR
(read-only, through the client it is given).
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class PinnedImage:
    requested: str
    repository: str
    digest: str
    uri: str  # registry/repo@sha256:...
    tags: tuple[str, ...]

    def as_dict(self) -> dict:
        return asdict(self)


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
    digest = details[0]["imageDigest"]
    return PinnedImage(requested, ref.repository, digest, f"{repo_uri}@{digest}",
                       tuple(details[0].get("imageTags", [])))
