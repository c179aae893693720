"""The whole AWS endpoint gone for a run (longer than the retries): a clear failed verdict, the
bundle whole on disk with an `.upload-pending` marker, and `papyrus-ops evidence upload-pending`
(a real CLI subprocess) completes it exactly once. (The bucket alone going down during a
deploy's evidence upload is in test_deploy_faults.py.)"""

from __future__ import annotations

from flows.insert_check import insert_check
from ground import aws
from papyrus_ops.runner import run_flow
from tests.support.evidence import assert_pending, upload_pending_twice
from tests.support.sandbox_state import sku_rows


def test_aws_endpoint_down_for_a_whole_run_is_a_clear_failure_with_pending_evidence(
        sb, monkeypatch, capture_dir):
    monkeypatch.setattr(aws, "MAX_ATTEMPTS", 2)  # the outage outlasts the retries, quickly
    aws._cached.cache_clear()
    cli_rows = sku_rows(sb, "cli")
    sb.faults.unavailable("*", "*", times=None)
    try:
        result = run_flow(insert_check, env="local")
    finally:
        sb.faults.clear()
        aws._cached.cache_clear()
    assert result["verdict"] == "failed", result
    assert result["error"] == (f"secret {sb.settings.db_secret_id}: Secrets Manager error "
                               "ServiceUnavailable"), result["error"]
    assert sku_rows(sb, "cli") == cli_rows
    ev = result["evidence"]
    assert ev["upload_pending"] is True
    marker = assert_pending(ev["folder"])
    assert "Service Unavailable" in marker["reason"] or "ServiceUnavailable" in marker["reason"]
    upload_pending_twice(sb, capture_dir, ev["folder"])
