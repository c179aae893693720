"""Automations as code on the session's Prefect server (its trigger and action services really
run): a failed deploy notifies a webhook on 127.0.0.1, the archive alert fires when no run
completes within its (here: 10 s) window, and every deploy verdict is an event."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from ground.events import DEPLOY_VERDICT
from ground.settings import ROOT
from papyrus_ops.prefect_local.automations import load_spec, register_automations, spec_path
from tests.support.canaries import ALERT_CANARY, SESSION_CANARIES
from tests.support.drift import Drift
from tests.support.waiting import wait_until
from tests.support.webhook import WebhookReceiver

pytestmark = pytest.mark.usefixtures("prefect_server")


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _forget(spec) -> None:
    """The session server outlives this module: leave none of our automations or blocks."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    with _client() as client:
        for a in spec.automations:
            for have in client.read_automations_by_name(a["name"]):
                client.delete_automation(have.id)
    with contextlib.suppress(Exception):  # not there: nothing to forget
        CustomWebhookNotificationBlock.delete(spec.block)


def _spec_copy(tmp_path, **replace) -> tuple:
    """deployments/local/automations.toml with some text replaced (names, windows)."""
    text = spec_path("local").read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "automations.toml"
    path.write_text(text)
    return path, load_spec("local", path)


def _events(name: str, since: datetime) -> list:
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    with _client() as client:
        # limit: the client's default (100) is more than the server accepts (50).
        page = client.read_events(limit=50, filter=EventFilter(
            event=EventNameFilter(name=[name]),
            occurred=EventOccurredFilter(since=since,
                                         until=datetime.now(UTC) + timedelta(1))))
    return page.events


@pytest.fixture
def hook():
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def registered(prefect_server, hook):
    """The file's automations, notifying `hook`."""
    spec = load_spec("local")
    _forget(spec)
    yield register_automations(prefect_server, "local", webhook_url=hook.url)
    _forget(spec)


def test_register_twice_changes_nothing_and_a_changed_file_updates_in_place(
        prefect_server, hook, registered, tmp_path):
    spec = load_spec("local")
    first = registered
    assert first["skipped"] is None and first["block"]["outcome"] == "created"
    assert [a["outcome"] for a in first["automations"]] == ["created"] * len(spec.automations)
    again = register_automations(prefect_server, "local", webhook_url=hook.url)
    assert again["block"] == {**first["block"], "outcome": "unchanged"}
    assert [(a["name"], a["id"], a["outcome"]) for a in again["automations"]] == \
        [(a["name"], a["id"], "unchanged") for a in first["automations"]]
    with _client() as client:
        for a in spec.automations:
            assert len(client.read_automations_by_name(a["name"])) == 1, a["name"]
    # Without the URL, the block is kept as it is (the URL is set once, by whoever has it).
    kept = register_automations(prefect_server, "local")
    assert kept["block"]["outcome"] == "kept" and kept["skipped"] is None
    # A changed window is an update of the same automation, not a second one.
    path, _ = _spec_copy(tmp_path, **{"within_seconds = 93600": "within_seconds = 7200"})
    changed = register_automations(prefect_server, "local", path=path)
    outcomes = {a["name"]: (a["id"], a["outcome"]) for a in changed["automations"]}
    missing = "papyrus local: cloudtrail archive missing"
    ids = {a["name"]: a["id"] for a in first["automations"]}
    assert outcomes[missing] == (ids[missing], "updated")
    assert {o for n, (_, o) in outcomes.items() if n != missing} == {"unchanged"}
    with _client() as client:
        (auto,) = client.read_automations_by_name(missing)
        assert auto.trigger.within == timedelta(hours=2)
    # The URL is a secret of the block, not its visible configuration.
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock.load(spec.block)
    assert block.url == "{{url}}" and hook.url not in json.dumps(block.model_dump(mode="json"))


@pytest.mark.parametrize(("old", "new", "message"), [
    ('kind = "run-state"', 'kind = "sometimes"', "kind must be one of"),
    ('event = "papyrus.deploy.verdict"', 'event = "papyrus.deploy.done"', "event must be one of"),
    ("within_seconds = 93600", "within_seconds = 5", "within_seconds must be a number >= 10"),
    ('deployment = "cloudtrail-archive-local"', "", "needs deployment"),
    ('name = "papyrus local: schema apply failed"', 'name = "papyrus local: deploy failed"',
     "every automation needs a name of its own"),
    ("[notify]", "[notice]", "KeyError"),
])
def test_a_file_that_cannot_be_registered_is_one_clear_error(tmp_path, old, new, message):
    from papyrus_ops.prefect_local.automations import AutomationsError

    with pytest.raises(AutomationsError, match=message):
        _spec_copy(tmp_path, **{old: new})


def test_the_files_name_only_deployments_and_flows_prefect_yaml_has():
    import yaml

    doc = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    flows = {d["entrypoint"].rsplit(":", 1)[1]: d for d in doc["deployments"]}
    names = {d["name"] for d in doc["deployments"]}
    for env in ("local", "prd"):
        spec = load_spec(env)
        assert spec.block == f"papyrus-alerts-{env}"
        for a in spec.automations:
            assert a["name"].startswith(f"papyrus {env}: ")
            for d in a.get("deployments", []) + [a.get("deployment")] * ("deployment" in a):
                assert d in names and d.endswith(f"-{env}"), d
            if "flow" in a:
                assert a["flow"] in flows


def test_no_url_and_no_block_registers_nothing_and_says_so(prefect_server, tmp_path,
                                                           monkeypatch):
    path, spec = _spec_copy(tmp_path, **{'block = "papyrus-alerts-local"':
                                         'block = "papyrus-alerts-never-made"'})
    monkeypatch.delenv(spec.url_env, raising=False)
    res = register_automations(prefect_server, "local", path=path)
    assert res["automations"] == [] and "alerts NOT registered" in res["skipped"]
    with _client() as client:
        assert client.read_automations_by_name(spec.automations[0]["name"]) == []


def test_the_cli_registers_the_alerts_once_and_refuses_without_a_url(prefect_server, hook):
    from tests.support.cli import cli_env, run_cli

    spec = load_spec("local")
    _forget(spec)
    try:
        env = cli_env(PAPYRUS_ALERT_WEBHOOK_URL=hook.url)
        first = run_cli("prefect", "alerts", "--api-url", prefect_server, env=env)
        assert first.returncode == 0, first.stderr
        assert f"notification block {spec.block}: created" in first.stdout
        second = run_cli("prefect", "alerts", "--api-url", prefect_server, "--json", env=env)
        assert second.returncode == 0, second.stderr
        done = json.loads(second.stdout)
        assert {a["outcome"] for a in done["automations"]} == {"unchanged"}
        assert len(done["automations"]) == len(spec.automations)
        assert hook.url not in first.stdout + second.stdout  # the URL is a secret
    finally:
        _forget(spec)
    # prd has no block on this server and no URL is given: one line, exit 2, nothing made.
    bare = {k: v for k, v in cli_env().items() if k != "PAPYRUS_ALERT_WEBHOOK_URL"}
    r = run_cli("prefect", "alerts", "--env", "prd", "--api-url", prefect_server, env=bare)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and "PAPYRUS_ALERT_WEBHOOK_URL is not set" in r.stderr
    with _client() as client:
        assert client.read_automations_by_name("papyrus prd: deploy failed") == []


def test_a_failed_deploy_emits_its_verdict_and_the_notification_arrives(
        sandbox, hook, registered, tmp_path):
    from flows.deploy import deploy
    from papyrus_ops.runner import run_flow

    since = datetime.now(UTC) - timedelta(seconds=5)
    drift = Drift(sandbox, tmp_path)
    drift.force_ssl("0")  # the gate refuses it: the deploy ends failed, nothing changed
    try:
        res = run_flow(deploy, env="local", image="latest")
    finally:
        drift.restore()
    assert res["verdict"] == "failed" and "preflight failed" in res["reason"], res

    def verdict_event():
        return [e for e in _events(DEPLOY_VERDICT, since)
                if e.payload.get("verdict") == "failed"
                and "preflight failed" in (e.payload.get("reason") or "")]

    (event,) = wait_until(verdict_event, 60, 0.5, "the papyrus.deploy.verdict event")
    s = sandbox.settings
    assert event.resource.id == f"papyrus.service.{s.cluster}/{s.service}"
    assert event.resource["papyrus.env"] == "local"
    assert event.payload["image"] == "latest" and event.payload["image_digest"]
    run_id = event.payload["flow_run_id"]
    assert run_id and f"prefect.flow-run.{run_id}" in {r.id for r in event.related}

    (note,) = wait_until(lambda: hook.matching(run_id), 90, 0.5, "the deploy-failed webhook")
    assert note["subject"] == "Papyrus local: papyrus.deploy.verdict failed", note
    assert "reason: preflight failed" in note["body"]
    assert event.payload["image_digest"] in note["body"]
    assert "automation: papyrus local: deploy failed" in note["body"]
    assert note["source"] == "papyrus-ops local"
    assert "None" not in note["body"], note["body"]  # nothing half-rendered
    for canary in SESSION_CANARIES:
        assert canary not in json.dumps(hook.received)


def test_every_deploy_verdict_is_an_event_and_only_the_bad_ones_notify(sandbox, hook,
                                                                       registered):
    from flows.deploy import deploy
    from papyrus_ops.runner import run_flow

    since = datetime.now(UTC) - timedelta(seconds=5)
    planned = run_flow(deploy, env="local", image="latest", plan=True)  # success, no change
    typo = run_flow(deploy, env="local", image="no-such-tag")  # bad input: the service is known
    assert (planned["verdict"], typo["verdict"]) == ("success", "bad_input"), (planned, typo)

    def by_verdict():
        got = {e.payload["verdict"]: e for e in _events(DEPLOY_VERDICT, since)
               if e.payload.get("image") in ("latest", "no-such-tag")}
        return got if {"success", "bad_input"} <= set(got) else None

    got = wait_until(by_verdict, 60, 0.5, "both verdict events")
    assert got["success"].payload["plan"] is True and got["success"].payload["image_digest"]
    assert got["bad_input"].resource["papyrus.verdict"] == "bad_input"
    bad_run = got["bad_input"].payload["flow_run_id"]
    note = wait_until(lambda: hook.matching(bad_run), 90, 0.5, "the bad-input webhook")[0]
    assert "not found in ECR" in note["body"], note["body"]
    assert "(not pinned)" in note["body"]
    # The success came first and was judged first: it sent nothing.
    assert hook.matching(got["success"].payload["flow_run_id"]) == []


def test_a_failed_schema_apply_notifies(sandbox, hook, registered):
    from flows.schema_init import schema_init
    from ground.events import SCHEMA_APPLY_VERDICT
    from papyrus_ops.runner import run_flow

    since = datetime.now(UTC) - timedelta(seconds=5)
    res = run_flow(schema_init, env="local", apply=True, database="no_such_database")
    assert res["verdict"] == "failed", res
    run_id = res["data"]["flow_run_id"]
    (event,) = wait_until(lambda: [e for e in _events(SCHEMA_APPLY_VERDICT, since)
                                   if e.payload.get("flow_run_id") == run_id], 60, 0.5,
                          "the papyrus.schema.apply.verdict event")
    assert event.resource.id == f"papyrus.database.{sandbox.settings.rds_instance}/" \
                                "no_such_database"
    note = wait_until(lambda: hook.matching(run_id), 90, 0.5, "the apply-failed webhook")[0]
    assert note["subject"] == "Papyrus local: papyrus.schema.apply.verdict failed"
    assert "no_such_database" in note["body"] and "automation: papyrus local: schema apply " \
        "failed" in note["body"], note["body"]
    assert "None" not in note["body"], note["body"]


def test_a_secret_in_a_verdict_reaches_neither_the_event_nor_the_notification(hook, registered):
    """The reason of a result is redacted by ground.result already; the event redacts what it
    is given once more, so a verdict built any other way cannot carry a secret out either."""
    from types import SimpleNamespace

    from prefect import flow

    from ground import events
    from ground.redact import REDACTOR

    REDACTOR.add(ALERT_CANARY)  # a secret the product knows (as it knows the DB password)
    since = datetime.now(UTC) - timedelta(seconds=5)
    settings = SimpleNamespace(cluster="papyrus-ecs-prd", service="canary-service", env="local")
    leaky = {"verdict": "failed", "env": "local", "evidence": None,
             "reason": f"probe failed: GET /dbcheck?token={ALERT_CANARY} -> 401",
             "data": {"image": "latest", "image_digest": f"sha256:{ALERT_CANARY}"}}

    @flow(name="alerts-canary")
    def judged():
        events.deploy_verdict(settings, leaky)

    judged()
    note = wait_until(lambda: hook.matching("canary-service"), 90, 0.5,
                      "the notification of the leaky verdict")[0]
    assert "probe failed: GET /dbcheck?token=" in note["body"], note["body"]
    (event,) = wait_until(lambda: [e for e in _events(DEPLOY_VERDICT, since)
                                   if e.resource.get("prefect.resource.name") == "canary-service"],
                          30, 0.5, "the leaky verdict's event")
    for text in (json.dumps(hook.received), event.model_dump_json()):
        assert ALERT_CANARY not in text


def test_a_crashed_deploy_run_and_a_failed_archive_run_notify_a_failed_deploy_run_does_not(
        prefect_server, hook, registered):
    """The run-state automations, on runs of deployments named as in the file (their states set
    through the API, as a worker or an engine would: the server emits the state events). A
    Failed deploy run is the verdict automation's: the run-state one stays quiet."""
    from prefect.client.schemas.objects import Flow
    from prefect.states import Crashed, Failed, Running

    made = []
    try:
        with _client() as client:
            def run_of(flow_name, deployment_name, run_name):
                fid = client.create_flow(Flow(name=flow_name))
                did = client.create_deployment(flow_id=fid, name=deployment_name)
                made.append(did)
                run = client.create_flow_run_from_deployment(did, name=run_name)
                client.set_flow_run_state(run.id, Running(), force=True)
                return run

            quiet = run_of("deploy", "deploy-local", "deploy local failed-run-alerttest")
            client.set_flow_run_state(quiet.id, Failed(message="gate"), force=True)
            crashed = run_of("deploy", "deploy-local", "deploy local crashed-alerttest")
            client.set_flow_run_state(crashed.id, Crashed(message="exit code 137"), force=True)
            failed = run_of("cloudtrail_archive", "cloudtrail-archive-local", "archive-alerttest")
            client.set_flow_run_state(failed.id, Failed(message="LookupEvents denied"),
                                      force=True)
        crash = wait_until(lambda: hook.matching(str(crashed.id)), 90, 0.5, "the crash webhook")
        assert crash[0]["subject"] == "Papyrus local: deploy local crashed-alerttest Crashed"
        assert "ended Crashed: exit code 137" in crash[0]["body"], crash[0]["body"]
        assert "automation: papyrus local: run crashed" in crash[0]["body"]
        arch = wait_until(lambda: hook.matching(str(failed.id)), 90, 0.5, "the archive webhook")
        assert "cloudtrail-archive-local: flow run archive-alerttest" in arch[0]["body"]
        assert "ended Failed: LookupEvents denied" in arch[0]["body"]
        # Both arrived, and the Failed deploy run's event came before them: nothing for it.
        assert hook.matching(str(quiet.id)) == []
    finally:
        with _client() as client:
            for did in set(made):  # the second deploy-local is the first one (an upsert)
                client.delete_deployment(did)


def test_the_archive_alert_fires_when_no_run_completes_within_its_window(
        prefect_server, hook, tmp_path):
    from prefect.client.schemas.objects import Flow
    from prefect.states import Completed, Running

    window = 10  # seconds: Prefect's shortest proactive window
    path, spec = _spec_copy(tmp_path, **{
        "within_seconds = 93600": f"within_seconds = {window}",
        '"cloudtrail-archive-local"': '"cloudtrail-archive-alerttest"',
        'block = "papyrus-alerts-local"': 'block = "papyrus-alerts-alerttest"',
        "papyrus local: ": "papyrus alerttest: "})
    _forget(spec)
    deployment_id = None
    try:
        res = register_automations(prefect_server, "local", webhook_url=hook.url, path=path)
        assert res["skipped"] is None, res
        with _client() as client:
            flow_id = client.create_flow(Flow(name="cloudtrail_archive"))
            deployment_id = client.create_deployment(flow_id=flow_id,
                                                     name="cloudtrail-archive-alerttest")
            run = client.create_flow_run_from_deployment(deployment_id, name="nightly-alerttest")
            # (On SQLite the server loads a new automation into its trigger service as the
            # create commits; the completion's event reaches that service later, through the
            # event stream.)
            client.set_flow_run_state(run.id, Running(), force=True)
            client.set_flow_run_state(run.id, Completed(), force=True)
            completed_at = time.time()
        note = wait_until(lambda: hook.matching("no Completed run"), 120, 0.5,
                          "the archive-missing webhook")[0]
        assert note["_received_at"] - completed_at >= window - 1, (note, completed_at)
        assert note["subject"] == "Papyrus local: no completed cloudtrail-archive-alerttest run"
        assert "last completed: nightly-alerttest" in note["body"], note["body"]
        # A deploy failure elsewhere, or another flow's completion, is not this alert.
        assert all("no Completed run" in n["body"] for n in hook.received)
    finally:
        _forget(spec)
        if deployment_id:
            with _client() as client:
                client.delete_deployment(deployment_id)
