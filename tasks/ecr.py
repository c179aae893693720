"""Pin the image by digest: whatever the operator gave becomes `registry/repo@sha256:…`."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from ground.retry import transient_only
from tasks.image_ref import ImageNotFound, PinnedImage, resolve_image

__all__ = ["ImageNotFound", "PinnedImage", "pin_image"]

pin_image = task(resolve_image, name="pin-image-digest", cache_policy=NO_CACHE, retries=3,
                 retry_delay_seconds=[1, 2, 4], retry_condition_fn=transient_only)
