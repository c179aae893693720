"""Every recognisable secret the tests plant, in one place: each must never show up in what the
code under test prints, logs, stores or uploads.

Canaries have the shape `CANARY-<what>-<hex>-PAPYRUS` (`is_canary`), so a stray one is easy to
recognise in any output.
"""

from __future__ import annotations

# The session sandbox's DB password and /dbcheck token (tests/conftest.py starts the sandbox with
# them). The end-of-session sweep (tests/support/sweep.py) searches everything for these two.
CANARY_PASSWORD = "CANARY-pw-7f3a9c-PAPYRUS"
CANARY_TOKEN = "CANARY-token-41d2e8-PAPYRUS"
SESSION_CANARIES = (CANARY_PASSWORD, CANARY_TOKEN)

# The evidence-library tests register this one with the process-wide redactor (tests/artifacts):
# it must differ from the session's, or the sweep would find the DB password redacted for it
# whether or not the product ever registers the password itself.
EVIDENCE_CANARY = "CANARY-evidence-9b1f4e-PAPYRUS"

# The password a drifted secret carries in the preflight/repair tests (never shown either).
DRIFT_PASSWORD = "CANARY-drift-pw-93be1d-PAPYRUS"

# The private ECS world of tests/sandbox/test_ecs_runtime.py (its own PostgreSQL and moto).
ECS_PASSWORD = "CANARY-ecs-pw-5d1e-PAPYRUS"
ECS_TOKEN = "CANARY-ecs-token-9b7c-PAPYRUS"


def is_canary(value: str | None) -> bool:
    return bool(value) and value.startswith("CANARY-") and value.endswith("-PAPYRUS")

# A secret that reaches a verdict's text (tests/alerts): the event and the notification must
# carry it redacted. Registered with the process-wide redactor by that test only.
ALERT_CANARY = "CANARY-alert-c04e71-PAPYRUS"
