"""ECR as AWS answers it for multi-arch images, where moto is kinder or silent.

moto 5.2.5 already stores an image index / manifest list and reports its
`imageManifestMediaType`; two things it does not do:

- **PutImage of an index whose manifests are not in the repository.** ECR refuses it with
  `ReferencedImagesNotFoundException` ("The manifest list is referencing an image that does not
  exist."; ECR API Reference, PutImage, Errors) — which is why `docker buildx --push` uploads
  the platform manifests before the index. moto stored the index as given, so a helper that
  pushed in the wrong order, or an index naming a manifest nobody pushed, looked fine here.
- **`artifactMediaType` in DescribeImages.** For an image manifest ECR reports the media type of
  its config (`application/vnd.oci.image.config.v1+json`,
  `application/vnd.docker.container.image.v1+json`); an index has no config and no
  `artifactMediaType` (ECR API Reference, ImageDetail). moto never reported it.
"""

from __future__ import annotations

import json

from moto.core.exceptions import ServiceException
from moto.ecr.models import ECRBackend, Image

from sandbox.patches import Patches

INDEX_MEDIA_TYPES = frozenset({
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
})



class ReferencedImagesNotFoundException(ServiceException):
    code = "ReferencedImagesNotFoundException"


def _doc(text: str) -> dict:
    try:
        doc = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _put_image(self, repository_name, image_manifest, image_tag,
               image_manifest_mediatype=None, digest=None):
    doc = _doc(image_manifest)
    media_type = image_manifest_mediatype or doc.get("mediaType")
    repo = self.repositories.get(repository_name)
    if repo is not None and media_type in INDEX_MEDIA_TYPES:
        present = {img.get_image_digest() for img in repo.images}
        if any(m.get("digest") not in present for m in doc.get("manifests") or []):
            raise ReferencedImagesNotFoundException(
                "The manifest list is referencing an image that does not exist.")
    return _PATCHES.original(ECRBackend, "put_image")(
        self, repository_name, image_manifest, image_tag, image_manifest_mediatype, digest)


def _artifact_media_type(self: Image) -> str | None:
    config = _doc(self.image_manifest).get("config")
    return config.get("mediaType") if isinstance(config, dict) else None


_PATCHES = Patches(
    (ECRBackend, "put_image", _put_image),
    # moto's serializer reads ImageDetail members as snake_case attributes.
    (Image, "artifact_media_type", property(_artifact_media_type)))
install, uninstall = _PATCHES.install, _PATCHES.uninstall
