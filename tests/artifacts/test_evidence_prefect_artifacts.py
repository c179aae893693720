"""Prefect artifacts from a real flow run: publish_summary (via finish) creates the markdown
summary, the checks table and the link; progress creates then updates one artifact; nothing
sent to the API holds the canary; outside runs everything is a no-op."""

from __future__ import annotations

import json

import pytest
from prefect import flow, task  # at collection: see test_evidence_prefect_logs.py

from artifacts import EvidenceBundle, artifact_key, checks_table, progress, publish_summary

pytestmark = pytest.mark.usefixtures("prefect_server")


def _artifacts(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def test_finish_publishes_summary_table_and_link(evidence_settings, s3, bucket, canary, caplog):
    @task
    def step(bundle, i):
        progress("schema-init-progress", (i + 1) / 4, f"step {i + 1}/4 password={canary}")
        bundle.append_text("schema_apply_exec", f"step {i} ok\n")

    @flow
    def schema_init():
        from prefect.runtime import flow_run

        bundle = EvidenceBundle.open(evidence_settings, "schema_init")
        assert bundle.run_id == flow_run.get_id()  # the flow run id, not a random uuid
        first = progress("schema-init-progress", 0.0, "starting")
        bundle.write_text("schema_dryrun_exec", f"BEGIN; ... ROLLBACK; PGPASSWORD={canary}\n")
        for i in range(4):
            step(bundle, i)
        again = progress("schema-init-progress", 1.0, "done")
        bundle.set_context(image_digest="sha256:" + "e" * 64, environment="local",
                           dsn=f"postgresql://papyrus:{canary}@db/papyrus")
        bundle.add_check("dry_run", "ROLLBACK", "ROLLBACK", "pass")
        bundle.add_check("secret.password", "present", canary, "pass")
        bundle.add_check("apply | pipe", {"rows": 1}, {"rows": 1, "note": canary}, "warn")
        result = bundle.finish("pass", s3=s3)
        return bundle, result, first, again

    state = schema_init(return_state=True)
    bundle, result, first, again = state.result()
    assert first and first == again  # one progress artifact, updated in place
    assert not result.pending and result.s3_uri == f"s3://{bucket}/{bundle.key_prefix}"
    arts = _artifacts(state.state_details.flow_run_id)
    by_key = {a.key: a for a in arts if a.key}
    assert {"schema-init-evidence", "schema-init-evidence-checks",
            "schema-init-evidence-location", "schema-init-progress"} <= set(by_key)
    md = by_key["schema-init-evidence"]
    assert md.type == "markdown"
    assert "PASS" in md.data and bundle.run_id in md.data
    assert result.s3_uri in md.data and result.manifest_sha256 in md.data
    for f in result.files:
        assert f["name"] in md.data and f["sha256"] in md.data
    assert "sha256:" + "e" * 64 in md.data and "postgresql://papyrus:***@db/papyrus" in md.data
    table = by_key["schema-init-evidence-checks"]
    assert table.type == "table"
    rows = json.loads(table.data)
    assert [r["check"] for r in rows] == ["dry_run", "secret.password", "apply | pipe"]
    assert rows[1]["actual"] == "***" and rows[2]["verdict"] == "warn"
    link = by_key["schema-init-evidence-location"]
    # Prefect 3 stores a link artifact as markdown: "[text](link)".
    assert link.type == "markdown"
    assert link.data == f"[{result.s3_uri}]({result.s3_uri})"
    prog = by_key["schema-init-progress"]
    assert prog.type == "progress" and float(prog.data) == 100.0
    # Nothing that reached the API holds the canary: data, descriptions, keys.
    for a in arts:
        blob = json.dumps(a.model_dump(mode="json"), default=str)
        assert canary not in blob, a.key
    assert canary not in md.data
    assert prog.description == "done"
    # The bundle went into tasks as an argument: Prefect could hash it for its cache key.
    assert not [r for r in caplog.records if "Unable to create hash" in r.getMessage()]


def test_pending_upload_links_to_the_local_folder(evidence_settings, dead_endpoint):
    from tests.support.evidence import make_s3

    @flow
    def deploy():
        bundle = EvidenceBundle.open(evidence_settings, "deploy")
        bundle.write_text("running_image", "repo@sha256:abc\n")
        return bundle.finish("fail", s3=make_s3(dead_endpoint, attempts=1))

    state = deploy(return_state=True)
    result = state.result()
    assert result.pending
    by_key = {a.key: a for a in _artifacts(state.state_details.flow_run_id) if a.key}
    assert result.folder.resolve().as_uri() in str(by_key["deploy-evidence-location"].data)
    assert "upload pending" in by_key["deploy-evidence"].data


def test_no_op_outside_runs(local_settings):
    assert progress("outside", 0.5, "x") is None
    checks_table("outside", [{"a": 1}], "x")
    b = EvidenceBundle.open(local_settings, "deploy")
    publish_summary(b, b.finish("pass"))  # no run: nothing happens, nothing raises


@pytest.mark.parametrize(("parts", "key"), [
    (("schema_init", "evidence"), "schema-init-evidence"),
    (("Deploy", "Evidence", "checks"), "deploy-evidence-checks"),
    (("cloudtrail_archive--x__y",), "cloudtrail-archive-x-y"),
])
def test_artifact_keys_follow_prefects_rule(parts, key):
    import re

    assert artifact_key(*parts) == key
    assert re.fullmatch(r"[a-z0-9-]*", key)
