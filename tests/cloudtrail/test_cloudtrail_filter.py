"""The Papyrus rule (docs/cloudtrail.md), as a pure function."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ground.settings import load_env
from tasks.cloudtrail.papyrus_filter import (
    PapyrusFilter,
    PapyrusNames,
    is_papyrus,
    names_from_settings,
)

NAMES = names_from_settings(load_env("local"), extra=["papyrus-deploy-oidc"],
                            security_group_ids=["sg-0123456789abcdef0"])
FLT = PapyrusFilter(NAMES)


def rec(params=None, *, resources=(), doc_extra=None, username=None, **envelope):
    doc = {"eventVersion": "1.09", "eventSource": "ecs.amazonaws.com",
           "eventName": "DescribeServices", "userAgent": "aws-cli/2",
           "requestParameters": params, "responseElements": None}
    doc.update(doc_extra or {})
    out = {"EventId": "e1", "EventName": "DescribeServices", "EventTime": "2025-09-10T00:00:00Z",
           "Resources": [{"ResourceType": t, "ResourceName": n} for t, n in resources],
           "CloudTrailEvent": doc, **envelope}
    if username:
        out["Username"] = username
    return out


def test_names_come_from_settings():
    s = load_env("local")
    for value in (s.cluster, s.service, s.family, s.task_role, s.execution_role,
                  s.ecr_repository, s.rds_instance, s.parameter_group, s.rds_security_group,
                  s.task_security_group, s.evidence_bucket, s.log_group):
        assert value in NAMES.names
    assert s.db_secret_id in NAMES.secrets
    assert "sg-0123456789abcdef0" in NAMES.names and "papyrus-deploy-oidc" in NAMES.names


def test_matches_names_and_arns_as_whole_tokens():
    yes = [
        {"cluster": "papyrus-ecs-prd", "services": ["papyrus-task-service"]},
        {"cluster": "arn:aws:ecs:us-west-2:123456789012:cluster/papyrus-ecs-prd"},
        {"taskDefinition": "papyrus-task:39"},
        {"secretId": "arn:aws:secretsmanager:us-west-2:1:secret:papyrus/prd/db-AbC12x"},
        {"secretId": "papyrus/prd/db"},
        {"dBInstanceIdentifier": "PAPYRUS-PRD"},  # case-insensitive
        {"groupId": "sg-0123456789abcdef0"},
        {"description": "papyrus-rds-sg: postgres from papyrus-ecs-task-sg."},
        {"image": "123.dkr.ecr.us-west-2.amazonaws.com/papyrus@sha256:abc"},
        {"bucketName": "papyrus-evidence-prd", "key": "docs/x.json"},
        {"roleArn": "arn:aws:iam::1:role/papyrusTaskRole"},
        {"roleName": "papyrus-deploy-oidc"},
        {"logGroupName": "/ecs/papyrus"},
    ]
    for params in yes:
        assert FLT(rec(params)), params
    no = [
        {"cluster": "papyrus-ecs-prd2"},
        {"cluster": "papyrus-ecs-prd-old"},
        {"bucketName": "papyrus-evidence-prd.backup"},
        {"roleName": "papyrusTaskRoleV2"},
        {"groupId": "sg-0123456789abcdef01"},
        {"cluster": "orders-ecs-prd"},
        {"logGroupName": "/ecs/papyrus-old"},
        None,
    ]
    for params in no:
        assert not FLT(rec(params)), params


def test_secret_suffix():
    flt = PapyrusFilter(PapyrusNames(secrets=("app/prd/db",)))
    assert flt(rec({"secretId": "arn:aws:secretsmanager:r:1:secret:app/prd/db-AbC12x"}))
    assert flt(rec({"secretId": "app/prd/db"}))
    assert not flt(rec({"secretId": "app/prd/db-extra-long"}))
    assert not flt(rec({"secretId": "app/prd/db-AbC12x7"}))
    assert not flt(rec({"secretId": "myapp/prd/db"}))


def test_which_fields_are_searched():
    # Resources in the envelope and the document, the principal, error messages: yes.
    assert FLT(rec(resources=[("AWS::ECS::Cluster", "papyrus-ecs-prd")]))
    assert FLT(rec(doc_extra={"resources": [{"ARN": "arn:aws:rds:us-west-2:1:db:papyrus-prd"}]}))
    assert FLT(rec(doc_extra={"userIdentity": {
        "arn": "arn:aws:sts::1:assumed-role/papyrusTaskExecutionRole/abc"}}))
    assert FLT(rec(doc_extra={"errorMessage": "not authorized on papyrus-ecs-prd"}))
    # User agents, hosts, event names and keys never make an event Papyrus-related.
    assert not FLT(rec(doc_extra={"userAgent": "papyrus-ecs-prd/1.0",
                                  "tlsDetails": {"clientProvidedHostHeader":
                                                 "papyrus-evidence-prd.s3.amazonaws.com"},
                                  "sourceIPAddress": "papyrus-prd"}))
    assert not FLT(rec({"papyrus-ecs-prd": "x"}))  # a key, not a value
    # An unparsable document is searched as text.
    assert FLT({"EventId": "e", "CloudTrailEvent": '{"cluster": "papyrus-ecs-prd"'})


def test_pure_function_and_roundtrip():
    r = rec({"cluster": "papyrus-ecs-prd"})
    again = PapyrusNames.from_dict(json.loads(json.dumps(NAMES.to_dict())))
    assert again.fingerprint() == NAMES.fingerprint()
    assert is_papyrus(r, again) and FLT.matches(r) == ["papyrus-ecs-prd"]
    assert not is_papyrus(r, PapyrusNames())


_alphabet = st.sampled_from(list("abcdefghijklmnopqrstuvwxyz0123456789-_./: ,\"'@"))


@settings(max_examples=200, deadline=None)
@given(st.text(_alphabet, max_size=40), st.text(_alphabet, max_size=40),
       st.sampled_from(sorted(NAMES.names + NAMES.secrets)))
def test_property_token_boundaries(prefix, suffix, name):
    """A name embedded between two separators always matches; text that contains no name
    (case-insensitively) never does."""
    assert FLT(rec({"x": f"{prefix} {name} {suffix}"}))
    text = prefix + suffix
    if not any(n.lower() in text.lower() for n in NAMES.names + NAMES.secrets):
        assert not FLT(rec({"x": text}))


_chunks = st.one_of(
    st.sampled_from(sorted(NAMES.names + NAMES.secrets)),
    st.text(st.sampled_from(list("aZ09-_./:\\\"\n\t @é")), max_size=6),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_chunks, max_size=6), st.sampled_from(
    ["requestParameters", "userAgent", "responseElements", "tlsDetails", "errorMessage"]))
def test_fast_path_gives_the_same_answer(chunks, field):
    """`check(record, line)` (substring prefilter on the serialised line) == `flt(record)`."""
    r = rec(doc_extra={field: {"v": "".join(chunks)}})
    text = json.dumps(r, separators=(",", ":"), ensure_ascii=False)
    assert FLT.check(r, text) == FLT(r)
    assert FLT.check(r, json.dumps(r)) == FLT(r)


def test_prefilter_needles_are_the_shortest_covering_set():
    """A name holding another name is dropped from the substring prefilter (its presence
    implies the shorter one's); the rule itself still tells them apart."""
    flt = PapyrusFilter(PapyrusNames(("papyrus", "papyrus-task", "x-papyrus-y", "sg-1"),
                                     ("papyrus/prd/db",)))
    assert flt._needles == ("papyrus", "sg-1")
    only_long = rec({"taskDefinition": "arn:aws:ecs:eu-west-1:1:task-definition/papyrus-task:3"})
    assert flt.check(only_long, json.dumps(only_long)) and flt.matches(only_long) == [
        "papyrus-task"]
    neither = rec({"group": "sg-10"}, username="someone")
    assert not flt.check(neither, json.dumps(neither)) and not flt(neither)
