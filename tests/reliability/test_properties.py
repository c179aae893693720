"""Bad input, property-based (hypothesis): the parsers the operator's input goes through either
accept it in a well-defined shape or refuse it with their own one-line error — never another
exception, never the secret in the message. Extends (does not repeat) tests/deploy/
test_image_ref.py, service/tests (request handling) and tests/cloudtrail/test_cloudtrail_window.py.

The bugs this module found (a superscript port, deeply nested JSON, a config section that is
not a table, a NaN/inf poll interval, calendar-edge times) were fixed in 2b2d916; their tests
keep the failing example explicitly (`@example`), so a regression fails deterministically.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from ground.redact import Redactor
from tasks.image_ref import DIGEST_RE, REPO_RE, TAG_RE, ImageRef, parse_image_ref

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = settings(max_examples=100, deadline=None, database=None)
ECR_HOST = "123456789012.dkr.ecr.us-west-2.amazonaws.com"

# -- image references -----------------------------------------------------------------------
component = st.from_regex(r"[a-z0-9]{1,8}(?:(?:[._]|__|-{1,2})[a-z0-9]{1,8}){0,2}", fullmatch=True)
repository = st.lists(component, min_size=1, max_size=3).map("/".join)
tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}", fullmatch=True)
digest = st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex())
registry = st.sampled_from([None, ECR_HOST, "210987654321.dkr.ecr.eu-central-1.amazonaws.com",
                            "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com"])


@SETTINGS
@given(repo=repository, tag_=st.one_of(st.none(), tag), digest_=digest, reg=registry)
def test_image_ref_well_formed_references_parse_to_their_parts(repo, tag_, digest_, reg):
    # Docker's rule, which the parser follows: without a registry, a first path component with
    # a '.' (or 'localhost') names a registry, so such a repository needs its full URI.
    first = repo.split("/")[0]
    assume(reg is not None or ("." not in first and first != "localhost"))
    ref = ImageRef(repo, tag=tag_, digest=None if tag_ else digest_, registry=reg)
    parsed = parse_image_ref(str(ref), "papyrus")
    assert parsed == ref
    assert parse_image_ref(str(parsed), "papyrus") == parsed  # a fixed point
    assert (parsed.tag is None) != (parsed.digest is None)  # exactly one of them


@SETTINGS
@given(st.text(max_size=120))
@example("123456789012.dkr.ecr.us-west-2.amazonaws.com/../etc:1")
@example("papyrus:latest@sha256:" + "a" * 64)
@example("localhost:5000/papyrus:1")
@example("papyrus@sha256:" + "a" * 64 + "\n")
def test_image_ref_anything_accepted_is_a_safe_reference(text):
    try:
        ref = parse_image_ref(text, "papyrus")
    except ValueError as e:
        msg = str(e)
        assert msg.startswith("malformed image reference ") and "\n" not in msg
        return
    # Accepted: nothing that could smuggle a path, a shell word or another registry through.
    assert REPO_RE.fullmatch(ref.repository) and ".." not in ref.repository
    assert not ref.repository.startswith("/") and not ref.repository.endswith("/")
    assert ref.tag is None or TAG_RE.fullmatch(ref.tag)
    assert ref.digest is None or DIGEST_RE.fullmatch(ref.digest)
    assert ref.registry is None or ref.registry.endswith((".amazonaws.com", ".amazonaws.com.cn"))
    assert str(ref).isascii() and not any(c.isspace() or c in "'\"`$;|&<>\\" for c in str(ref))


@SETTINGS
@given(prefix=st.text(min_size=1, max_size=5), ref=st.sampled_from(
    ["latest", "papyrus:v1", f"papyrus@sha256:{'b' * 64}", f"{ECR_HOST}/papyrus:v1"]))
def test_image_ref_surrounding_junk_is_refused(prefix, ref):
    assume(prefix.strip() != prefix or not prefix.isascii() or any(c.isspace() for c in prefix))
    for text in (prefix + ref, ref + prefix):
        with pytest.raises(ValueError, match="malformed image reference"):
            parse_image_ref(text, "papyrus")


# -- the DB secret --------------------------------------------------------------------------
CANARY_LIKE = "CANARY-prop-pw-5e1f-PAPYRUS"
# Every generated string value carries a marker, so "no value in the message" is checkable.
secret_password = st.one_of(st.just(CANARY_LIKE), st.text(max_size=30).map(
    lambda t: f"PW-{t}-PW"))
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                        st.text(max_size=20).map(lambda t: f"V4L-{t}"))


@pytest.fixture
def private_redactor(monkeypatch):
    """parse_db_secret registers what it sees with the process-wide redactor: give it a private
    one, so hypothesis's random strings are not masked in every later log line."""
    import tasks.db

    r = Redactor()
    monkeypatch.setattr(tasks.db, "REDACTOR", r)
    return r


def good_doc(password: str) -> dict:
    return {"host": "papyrus-prd.abc.us-west-2.rds.amazonaws.com", "port": 5432,
            "username": "papyrus_app", "password": password, "dbname": "papyrus"}


@settings(SETTINGS, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=secret_password,
       changes=st.dictionaries(st.sampled_from(["host", "port", "username", "dbname", "engine",
                                                "password", "extra"]),
                               st.one_of(json_scalar, st.lists(json_scalar, max_size=2)),
                               max_size=3),
       drop=st.sets(st.sampled_from(["host", "port", "username", "password", "dbname"]),
                    max_size=2))
def test_db_secret_valid_or_one_clean_error(private_redactor, password, changes, drop):
    from tasks.db import DbSecretError, parse_db_secret

    doc = {k: v for k, v in good_doc(password).items() if k not in drop} | changes
    text = json.dumps(doc)
    try:
        s = parse_db_secret(text, "papyrus/prd/db")
    except DbSecretError as e:
        msg = str(e)
        assert msg.startswith("secret papyrus/prd/db: ") and "\n" not in msg
        # Keys, never values: not the password, not any other value we put in.
        assert "PW-" not in msg and CANARY_LIKE not in msg and "V4L-" not in msg, msg
        return
    assert isinstance(s.port, int) and 0 < s.port < 65536
    assert all(isinstance(getattr(s, k), str) and getattr(s, k).strip()
               for k in ("host", "username", "password", "dbname"))
    assert "password='***'" in repr(s) and "password" not in s.public()
    assert s.password in private_redactor  # registered before anything could print it


@settings(SETTINGS, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=60), st.binary(max_size=20), st.integers(), st.none()))
def test_db_secret_not_json_never_echoes_the_text(private_redactor, junk):
    from tasks.db import DbSecretError, parse_db_secret

    text = f"{junk} {CANARY_LIKE}" if isinstance(junk, str) else junk
    try:
        parse_db_secret(text, "papyrus/prd/db")
    except DbSecretError as e:
        assert CANARY_LIKE not in str(e) and "\n" not in str(e)
        if isinstance(text, str) and text.strip():
            assert CANARY_LIKE in private_redactor  # a pasted password is masked from then on
        return
    raise AssertionError("a non-object secret was accepted")


@settings(SETTINGS, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(port=st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=5))
@example(port="²")
def test_db_secret_port_strings_are_a_port_or_a_secret_error(private_redactor, port):
    from tasks.db import DbSecretError, parse_db_secret

    try:
        s = parse_db_secret(json.dumps(good_doc("pw-12345") | {"port": port}), "s")
    except DbSecretError:
        return
    assert 0 < s.port < 65536


def test_db_secret_deeply_nested_json_is_a_secret_error(private_redactor):
    from tasks.db import DbSecretError, parse_db_secret

    with pytest.raises(DbSecretError):
        parse_db_secret("[" * 100_000, "papyrus/prd/db")  # < 64 KiB: a valid secret size


# -- the environment loader -----------------------------------------------------------------
LOCAL = ROOT / "deployments" / "local"
BASE_TOML = (LOCAL / "config.toml").read_text()
SCALARS = st.one_of(st.integers(min_value=-10, max_value=70000), st.booleans(),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.lists(st.text(max_size=5), max_size=2))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(json.dumps(x) for x in v) + "]"
    return json.dumps(v)


@pytest.fixture
def deployments(tmp_path, monkeypatch):
    """A private PAPYRUS_DEPLOYMENTS_DIR with a copy of the local environment (the module reads
    the variable at import, so the module attribute is patched)."""
    import ground.settings as config

    root = tmp_path / "deployments"
    shutil.copytree(LOCAL, root / "fuzz")
    monkeypatch.setattr(config, "DEPLOYMENTS", root)
    return root


def load(root: Path, text: str):
    from ground.settings import load_env

    (root / "fuzz" / "config.toml").write_text(text)
    return load_env("fuzz")


def edited(key: str, value: str) -> str:
    lines = BASE_TOML.splitlines()
    out = [f"{key} = {value}" if re.match(rf"^{re.escape(key)}\s*=", ln) else ln for ln in lines]
    return "\n".join(out) + "\n"


EDITABLE = ("region", "cluster", "container_port", "timeout_seconds", "poll_seconds", "subnets",
            "mode", "bucket", "repository", "secret_id", "task_definition",
            "required")  # [approval] required: true or false, nothing else


@settings(SETTINGS, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(EDITABLE), value=SCALARS)
@example(key="poll_seconds", value=1.5)
@example(key="poll_seconds", value=float("nan"))
@example(key="timeout_seconds", value=float("inf"))
def test_env_loader_settings_or_one_config_error(deployments, key, value):
    from ground.settings import ConfigError

    try:
        s = load(deployments, edited(key, toml_value(value)))
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg and str(deployments / "fuzz" / "config.toml") in msg
        return
    assert 0 < s.container_port <= 65535
    assert s.deploy_timeout_seconds > 0 and 0 < s.deploy_poll_seconds < math.inf
    assert all(isinstance(x, str) for x in s.subnets)
    assert (s.folder / s.task_definition).is_file()
    assert isinstance(s.approval_required, bool) and s.approval_timeout_seconds > 0


@settings(SETTINGS, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(env=st.text(max_size=40))
@example(env="../local")
@example(env="local/../local")
@example(env="LOCAL")
def test_env_names_are_folders_of_the_deployments_dir_only(deployments, env):
    from ground.settings import ConfigError

    try:
        s = load(deployments, BASE_TOML) if env == "fuzz" else None
        if s is None:
            from ground.settings import load_env

            s = load_env(env)
    except ConfigError as e:
        assert str(e).startswith(f"unknown environment {env!r}") and "['fuzz']" in str(e)
        return
    assert s.env == env == "fuzz" and s.folder == deployments / "fuzz"


@settings(SETTINGS, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(section=st.sampled_from(["aws", "ecs", "db", "deploy", "probe"]),
       value=st.sampled_from(["5", '"region"', "[1, 2]", "true"]))
@example(section="aws", value="5")
def test_env_loader_a_section_that_is_not_a_table_is_a_config_error(deployments, section,
                                                                       value):
    from ground.settings import ConfigError

    text = BASE_TOML.replace(f"[{section}]\n", f"[{section}_moved]\n")
    with pytest.raises(ConfigError, match=rf"\[{section}\]"):
        load(deployments, f"{section} = {value}\n" + text)


@settings(SETTINGS, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.sampled_from(["nan", "inf", "+inf"]))
@example(value="nan")
def test_env_loader_refuses_a_poll_interval_that_is_not_finite(deployments, value):
    from ground.settings import ConfigError

    with pytest.raises(ConfigError, match="poll_seconds"):
        load(deployments, edited("poll_seconds", value))


# -- CloudTrail time windows ----------------------------------------------------------------
NOW = dt.datetime(2025, 10, 21, 12, 0, 0, tzinfo=dt.UTC)
aware = st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2100, 1, 1),
                     timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=9)),
                                                dt.timezone(dt.timedelta(hours=-7))]))
iso_text = st.one_of(aware.map(lambda d: d.isoformat()),
                     aware.map(lambda d: d.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
                     st.text(max_size=30))


@SETTINGS
@given(days=st.one_of(st.none(), st.integers(-5, 200), st.floats(allow_nan=True)),
       since=st.one_of(st.none(), iso_text), until=st.one_of(st.none(), iso_text),
       incremental=st.booleans(), settle=st.floats(0, 3600))
def test_window_is_half_open_inside_90_days_or_one_input_error(days, since, until, incremental,
                                                                settle):
    from tasks.cloudtrail.window import MAX_DAYS, ArchiveInputError, plan_slices, resolve_window

    try:
        w = resolve_window(days, since, until, incremental=incremental, now=NOW,
                           settle_seconds=settle)
    except ArchiveInputError as e:
        assert "\n" not in str(e)
        return
    oldest = NOW - dt.timedelta(days=MAX_DAYS)
    assert w.since.tzinfo is not None and w.until.tzinfo is not None
    assert oldest <= w.since <= w.until <= NOW
    assert w.empty == (w.since == w.until) and (not w.empty or incremental)
    slices = plan_slices(w.since, w.until, 86400)
    assert all(a < b for a, b in slices)
    assert [a for a, _ in slices[1:]] == [b for _, b in slices[:-1]]  # tiles, no gap or overlap
    assert not slices or (slices[0][0], slices[-1][1]) == (w.since, w.until)


@SETTINGS
@given(text=st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]))
@example(text="0001-01-01T00:00:00+01:00")
def test_window_edge_of_calendar_times_are_input_errors(text):
    from tasks.cloudtrail.window import ArchiveInputError, resolve_window

    with pytest.raises(ArchiveInputError):
        resolve_window(since=text, now=NOW)
