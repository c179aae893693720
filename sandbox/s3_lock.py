"""S3 Object Lock retention as S3 enforces it where moto is kinder.

moto 5.2.5 keeps a locked version from being deleted (`DeleteObject` with its `VersionId` is
`AccessDenied` until the retain-until date, unless governance is bypassed) and applies a
bucket's default retention to new objects, as S3 does. But `PutObjectRetention` simply replaces
a version's retention: anyone allowed to call it could shorten or remove the lock and then
delete the version. S3 refuses that: in governance mode "you must have the
s3:BypassGovernanceRetention permission and must explicitly include
x-amz-bypass-governance-retention:true" to shorten or remove a retention period; in compliance
mode "its retention period can't be shortened" and its mode can't change, by anyone; extending
a period is always allowed (S3 User Guide, "How S3 Object Lock works": retention modes and
"Retention periods"; S3 API Reference, PutObjectRetention: `x-amz-bypass-governance-retention`).
The permission side (`s3:BypassGovernanceRetention` for a request with that header) is checked
in `sandbox.iam`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from moto.s3.exceptions import AccessDeniedByLock
from moto.s3.responses import S3Response

from sandbox.patches import Patches


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _refused(current_mode: str | None, current_until: str | None, new_mode: str | None,
             new_until: str | None, bypass: bool) -> bool:
    until = _when(current_until)
    if current_mode not in ("GOVERNANCE", "COMPLIANCE") or until is None:
        return False
    if until <= datetime.now(UTC):
        return False  # the retention has expired: the version is no longer protected
    later = _when(new_until)
    keeps = new_mode in ("GOVERNANCE", "COMPLIANCE") and later is not None and later >= until
    if current_mode == "COMPLIANCE":
        return not (keeps and new_mode == "COMPLIANCE")
    return not keeps and not bypass


def _put_object_retention(self: S3Response):
    version_id = self._get_param("versionId")
    key = self.backend.get_object(self.bucket_name, self.parse_key_name(),
                                  version_id=version_id)
    if key is not None:
        new_mode, new_until = self._mode_until_from_body()
        bypass = self.headers.get("x-amz-bypass-governance-retention", "").lower() == "true"
        if _refused(key.lock_mode, key.lock_until, new_mode, new_until, bypass):
            raise AccessDeniedByLock
    return _PATCHES.original(S3Response, "put_object_retention")(self)


_PATCHES = Patches((S3Response, "put_object_retention", _put_object_retention))
install, uninstall = _PATCHES.install, _PATCHES.uninstall
