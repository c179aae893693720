"""The EventBridge matcher (tasks/event_pattern.py) and the task-failure rule's pattern.

The JSON fixtures are ECS "Task State Change" events written after the examples in the Amazon
ECS developer guide (task state change events), for Papyrus' cluster, service and task
definition: exit code 3 (the runbook's crash), two start failures, and stops that must not
alert.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.monitoring.event_pattern import PatternError, matches, operators, validate
from tasks.monitoring.eventrules import cluster_arn, task_failure_pattern

FIXTURES = Path(__file__).parent / "fixtures"
ACCOUNT, REGION = "123456789012", "us-west-2"
REASONS = ["CannotPullContainerError", "ResourceInitializationError"]


def load_event(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(scope="module")
def pattern():
    return task_failure_pattern(cluster_arn(REGION, ACCOUNT, "papyrus-ecs-prd"),
                                "papyrus-task-service", REASONS)


EXPECTED = {
    "task_stopped_exit3.json": True,
    "task_failed_to_start_cannot_pull.json": True,
    "task_failed_to_start_resource_init.json": True,
    "task_stopped_exit0_user.json": False,
    "task_stopped_scale_in_exit0.json": False,
    "task_stopped_exit3_other_service.json": False,
    "task_stopped_exit3_other_cluster.json": False,
    "task_running.json": False,
}


def test_every_fixture_has_an_expectation():
    assert sorted(p.name for p in FIXTURES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rule_pattern_on_ecs_events(pattern, name):
    assert matches(pattern, load_event(name)) is EXPECTED[name]


def test_start_failure_branches_are_independent(pattern):
    """A start failure matches on stopCode alone, and on the stopped reason alone."""
    event = load_event("task_failed_to_start_cannot_pull.json")
    assert "exitCode" not in event["detail"]["containers"][0]  # not the exit-code branch
    by_reason = json.loads(json.dumps(event))
    by_reason["detail"]["stopCode"] = "EssentialContainerExited"
    assert matches(pattern, by_reason)
    by_code = json.loads(json.dumps(event))
    by_code["detail"]["stoppedReason"] = "Task failed to start"
    assert matches(pattern, by_code)
    neither = json.loads(json.dumps(by_code))
    neither["detail"]["stopCode"] = "EssentialContainerExited"
    assert not matches(pattern, neither)


def test_any_container_with_nonzero_exit_matches(pattern):
    """detail.containers is an array: one non-zero exit code among several is enough."""
    event = load_event("task_stopped_exit0_user.json")
    sidecar = dict(event["detail"]["containers"][0], name="log-router", exitCode=137)
    event["detail"]["containers"].append(sidecar)
    assert matches(pattern, event)
    sidecar["exitCode"] = 0
    assert not matches(pattern, event)


def test_pattern_uses_only_implemented_operators(pattern):
    assert operators(pattern) <= {"$or", "anything-but", "wildcard"}
    assert validate(json.dumps(pattern)) == pattern


# -- the matcher's semantics, one by one -----------------------------------------------------
EV = {"source": "aws.ecs", "n": 3, "f": 2.5, "b": True, "z": None, "s": "CannotPull: x",
      "arr": [1, 2, 3], "objs": [{"k": "a", "v": 0}, {"k": "b", "v": 7}], "o": {"p": {"q": "deep"}}}


@pytest.mark.parametrize(("pat", "expected"), [
    ({"source": ["aws.ecs"]}, True),
    ({"source": ["aws.ec2", "aws.ecs"]}, True),  # array of alternatives
    ({"source": ["aws.ec2"]}, False),
    ({"n": [3.0]}, True),  # numbers by value
    ({"n": ["3"]}, False),  # no string/number confusion
    ({"b": [1]}, False),  # no bool/number confusion
    ({"b": [True]}, True),
    ({"z": [None]}, True),
    ({"missing": [None]}, False),
    ({"o": {"p": {"q": ["deep"]}}}, True),  # nested objects
    ({"o": {"p": {"q": ["shallow"]}}}, False),
    ({"arr": [2]}, True),  # an array in the event: any element
    ({"arr": [9]}, False),
    ({"objs": {"k": ["b"]}}, True),  # arrays of objects are flattened
    ({"objs": {"k": ["b"], "v": [0]}}, True),  # ... field by field, like EventBridge
    ({"s": [{"prefix": "CannotPull"}]}, True),
    ({"s": [{"prefix": "cannotpull"}]}, False),
    ({"s": [{"suffix": ": x"}]}, True),
    ({"s": [{"equals-ignore-case": "cannotpull: X"}]}, True),
    ({"s": [{"wildcard": "*Pull*"}]}, True),
    ({"s": [{"wildcard": "Pull*"}]}, False),
    ({"n": [{"prefix": "3"}]}, False),  # string filters never match numbers
    ({"n": [{"anything-but": 0}]}, True),
    ({"n": [{"anything-but": [1, 3]}]}, False),
    ({"s": [{"anything-but": {"prefix": "Cannot"}}]}, False),
    ({"s": [{"anything-but": {"suffix": "y"}}]}, True),
    ({"missing": [{"anything-but": 0}]}, False),  # needs a value
    ({"arr": [{"anything-but": 1}]}, True),  # 2 and 3 are not 1
    ({"n": [{"numeric": [">", 0, "<=", 3]}]}, True),
    ({"n": [{"numeric": ["<", 3]}]}, False),
    ({"f": [{"numeric": ["=", 2.5]}]}, True),
    ({"s": [{"numeric": [">", 0]}]}, False),
    ({"b": [{"numeric": [">", 0]}]}, False),
    ({"s": [{"exists": True}]}, True),
    ({"missing": [{"exists": False}]}, True),
    ({"s": [{"exists": False}]}, False),
    ({"nothere": {"deeper": [{"exists": False}]}}, True),
    ({"o": [{"exists": True}]}, False),  # exists works on leaves only
    ({"$or": [{"n": [4]}, {"s": [{"prefix": "Cannot"}]}]}, True),
    ({"$or": [{"n": [4]}, {"s": [{"prefix": "x"}]}]}, False),
    ({"source": ["aws.ecs"], "$or": [{"n": [3]}, {"n": [4]}], "b": [False]}, False),
])
def test_semantics(pat, expected):
    assert matches(pat, EV) is expected


@pytest.mark.parametrize("bad", [
    {"s": "CannotPull: x"},  # a leaf must be an array
    {"s": []},
    {"s": [{"regex": ".*"}]},  # unsupported operator: an error, never a silent miss
    {"s": [{"prefix": "a", "suffix": "b"}]},
    {"n": [{"numeric": [">>", 1]}]},
    {"n": [{"numeric": [">", "1"]}]},
    {"n": [{"anything-but": {"wildcard": "*"}}]},
    {"s": [{"exists": "yes"}]},
    {"$or": [{"n": [3]}]},
    {"o": {"p": {"q": [{"cidr": "10.0.0.0/8"}]}}},
])
def test_malformed_or_unsupported_patterns_raise(bad):
    with pytest.raises(PatternError):
        validate(bad)
    with pytest.raises(PatternError):
        matches(bad, {})


# -- properties ---------------------------------------------------------------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=4))
events_values = st.one_of(scalars, st.lists(scalars, max_size=4))


@settings(deadline=None)
@given(value=events_values, wanted=scalars)
def test_exact_and_anything_but_are_complements(value, wanted):
    """For any present value: `[v]` and `[{"anything-but": v}]` split the values between them
    (an array in the event can satisfy both), and a missing field satisfies neither."""
    event = {"k": value}
    values = value if isinstance(value, list) else [value]
    exact = matches({"k": [wanted]}, event)
    but = matches({"k": [{"anything-but": wanted}]}, event)
    assert exact == any(_same(v, wanted) for v in values)
    assert but == any(not _same(v, wanted) for v in values)
    assert not matches({"other": [wanted]}, event)
    assert not matches({"other": [{"anything-but": wanted}]}, event)


def _same(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


leaf_patterns = st.sampled_from([
    [3], ["a"], [{"prefix": "a"}], [{"anything-but": 0}], [{"numeric": [">", 1]}],
    [{"exists": True}], [{"exists": False}], [None, True],
])


@settings(deadline=None)
@given(p1=leaf_patterns, p2=leaf_patterns, value=events_values)
def test_or_is_the_union_of_its_alternatives(p1, p2, value):
    event = {"k": value}
    assert matches({"$or": [{"k": p1}, {"k": p2}]}, event) == (
        matches({"k": p1}, event) or matches({"k": p2}, event))
    # and an array of alternatives in one leaf is the same union
    assert matches({"k": p1 + p2}, event) == (matches({"k": p1}, event)
                                               or matches({"k": p2}, event))


@settings(deadline=None)
@given(code=st.integers(-255, 255), extra=st.lists(st.integers(0, 255), max_size=3))
def test_rule_matches_iff_some_container_exit_code_is_nonzero(code, extra):
    pattern = task_failure_pattern(cluster_arn(REGION, ACCOUNT, "papyrus-ecs-prd"),
                                   "papyrus-task-service", REASONS)
    event = load_event("task_stopped_exit0_user.json")
    base = event["detail"]["containers"][0]
    event["detail"]["containers"] = [dict(base, exitCode=c) for c in [code, *extra]]
    assert matches(pattern, event) == any(c != 0 for c in [code, *extra])
