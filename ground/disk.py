"""Whether this process's local disk outlives the run: on an ECS/Fargate task it does not.

Evidence that could not be uploaded waits on local disk with an `.upload-pending` marker
(artifacts/storage.py) for `papyrus-ops evidence upload-pending`. That is a promise only a
disk that survives the run can keep: a flow run on the ECS work pool writes to the task's
ephemeral storage, which is deleted when the task stops (ECS Developer Guide, "Fargate task
ephemeral storage"). There a pending upload is evidence lost, and the run says so (Failed).

ECS sets `ECS_CONTAINER_METADATA_URI_V4` in every container of a task (Fargate platform
1.4.0 and later; ECS Developer Guide, "Task metadata endpoint version 4"); the ECS pool's job
template also sets `PAPYRUS_EPHEMERAL_DISK=1`, which decides whatever the platform
(`0` says the disk is kept, e.g. an EFS-backed evidence root).
"""

from __future__ import annotations

import os

ECS_METADATA = ("ECS_CONTAINER_METADATA_URI_V4", "ECS_CONTAINER_METADATA_URI")


def disk_outlives_run() -> bool:
    explicit = os.environ.get("PAPYRUS_EPHEMERAL_DISK", "").strip().lower()
    if explicit in ("1", "true", "yes"):
        return False
    if explicit in ("0", "false", "no"):
        return True
    return not any(os.environ.get(v) for v in ECS_METADATA)
