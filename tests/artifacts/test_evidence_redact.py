"""Redactor: each pattern form, registered values and their encodings, dict masking, errors,
and hypothesis properties (no registered secret survives; redact is idempotent)."""

from __future__ import annotations

import json
import logging
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ground.log_redaction import RedactingFilter
from ground.redact import MARK, RedactedError, Redactor, is_sensitive_key, redacted_errors

AWS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def r() -> Redactor:
    return Redactor()


@pytest.mark.parametrize(("text", "expected"), [
    ("postgresql://papyrus:s3cr3t!@db.example:5432/papyrus",
     "postgresql://papyrus:***@db.example:5432/papyrus"),
    ("dsn=postgres://u:p@ss@host/db sslmode=require",  # unencoded '@' in the password
     "dsn=postgres://u:***@host/db sslmode=require"),
    ("postgresql+psycopg2://app:pw%40x@h:5432/d", "postgresql+psycopg2://app:***@h:5432/d"),
    ("host=h port=5432 user=papyrus password=abc123 dbname=papyrus",
     "host=h port=5432 user=papyrus password=*** dbname=papyrus"),
    ("password='with spaces' sslmode=require", "password='***' sslmode=require"),
    ("PGPASSWORD=zzzz9 psql -h db", "PGPASSWORD=*** psql -h db"),
    ('{"username": "papyrus", "password": "pw\\"quoted", "port": 5432}',
     '{"username": "papyrus", "password": "***", "port": 5432}'),
    ("{'password': 'abc', 'SecretId': 'papyrus/prd/db'}",
     "{'password': '***', 'SecretId': 'papyrus/prd/db'}"),
    ('"SecretString": "{\\"password\\": \\"x\\"}"', '"SecretString": "***"'),
    (f"aws_secret_access_key = {AWS_KEY}", "aws_secret_access_key = ***"),
    (f"AWS_SECRET_ACCESS_KEY {AWS_KEY} and more", "AWS_SECRET_ACCESS_KEY *** and more"),
    (f'export AWS_SECRET_ACCESS_KEY="{AWS_KEY}"', 'export AWS_SECRET_ACCESS_KEY="***"'),
    (f'"SecretAccessKey": "{AWS_KEY}"', '"SecretAccessKey": "***"'),
    ("Authorization: Bearer eyJhbGciOi.payload.sig", "Authorization: Bearer ***"),
    ("curl -H 'authorization: Basic dXNlcjpwYXNz' x", "curl -H 'authorization: Basic ***' x"),
    ("GET /dbcheck?token=abcd1234&x=1", "GET /dbcheck?token=***&x=1"),
    ("--password hunter22 --token-file /run/t", "--password *** --token-file /run/t"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY-----",
     "-----BEGIN RSA PRIVATE KEY-----***-----END RSA PRIVATE KEY-----"),
])
def test_patterns(r, text, expected):
    assert r.redact(text) == expected
    assert r.redact(expected) == expected


@pytest.mark.parametrize("text", [
    "secret_id=papyrus/prd/db token_secret_id=papyrus/prd/dbcheck-token",  # names, not secrets
    "password: present",
    '{"password": "present"}',
    "image 1234.dkr.ecr.us-west-2.amazonaws.com/papyrus@sha256:" + "a" * 64,
    "https://host:5000/v2/papyrus@sha256:abc",
    "sha1=" + "0123456789abcdef" * 2 + "01234567",  # 40 hex chars without a key name
    "INSERT 0 1",
])
def test_no_false_positives(r, text):
    assert r.redact(text) == text


def test_registered_values_and_their_encodings(r):
    pw = 'p@ss w/"rd\\1'
    r.add(pw, None, "", "abc")  # None, empty and short values are ignored
    assert "abc" not in r.values and "" not in r.values
    for form in (pw, "p%40ss%20w%2F%22rd%5C1", "p%40ss+w%2F%22rd%5C1", json.dumps(pw)[1:-1],
                 repr(pw)[1:-1]):
        assert r.redact(f"x {form} y") == f"x {MARK} y", form
    assert r.redact("abc is fine") == "abc is fine"


def test_add_secret_json(r):
    r.add_secret_json(json.dumps({"username": "papyrus", "password": "Pw-0123",
                                  "host": "db.example", "api_token": "tok-5678",
                                  "nested": {"client_secret": "cs-9999"}, "port": 5432}))
    assert r.redact("Pw-0123 tok-5678 cs-9999 papyrus db.example") == \
        "*** *** *** papyrus db.example"
    r.add_secret_json({"password": "dict-form-pw"})
    assert r.redact("dict-form-pw") == MARK
    r.add_secret_json("not json but a whole secret")
    assert r.redact("-> not json but a whole secret <-") == "-> *** <-"


def test_redact_obj_masks_sensitive_keys_and_copies(r):
    r.add("hunter2-pw")
    src = {
        "password": "x1", "Authorization": "Bearer q", "SecretString": '{"a": 1}',
        "NextToken": "abc", "db_secret_id": "papyrus/prd/db", "password_present": True,
        "password_state": "present", "note": "uses hunter2-pw",
        "rows": [{"token": 5}, ("t", "hunter2-pw")], "n": 5, "none": None,
        "dsn": "postgresql://u:pw9@h/d",
    }
    out = r.redact_obj(src)
    assert out == {
        "password": MARK, "Authorization": MARK, "SecretString": MARK, "NextToken": MARK,
        "db_secret_id": "papyrus/prd/db", "password_present": True,
        "password_state": "present", "note": f"uses {MARK}",
        "rows": [{"token": MARK}, ("t", MARK)], "n": 5, "none": None,
        "dsn": f"postgresql://u:{MARK}@h/d",
    }
    assert src["password"] == "x1" and src["rows"][1][1] == "hunter2-pw"  # a copy


@pytest.mark.parametrize(("key", "sensitive"), [
    ("password", True), ("PGPASSWORD", True), ("SecretString", True), ("api_token", True),
    ("Authorization", True), ("aws_secret_access_key", True), ("NextToken", True),
    ("SecretId", False), ("db_secret_id", False), ("token_secret_id", False),
    ("password_present", False), ("username", False), ("ARN", False),
])
def test_sensitive_keys(key, sensitive):
    assert is_sensitive_key(key) is sensitive


def test_thread_safety(r):
    secrets = [f"secret-{i:04d}-value" for i in range(100)]
    errors = []

    def adder(chunk):
        for s in chunk:
            r.add(s)
            if s in r.redact(f"<{s}>"):
                errors.append(s)

    threads = [threading.Thread(target=adder, args=(secrets[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert r.redact(" ".join(secrets)) == " ".join([MARK] * len(secrets))


def test_redacted_errors(r):
    r.add("err-secret-1")
    with pytest.raises(RedactedError) as info, redacted_errors(r):
        try:
            raise KeyError("inner err-secret-1")
        except KeyError as inner:
            raise ValueError("connect failed: password=err-secret-1") from inner
    assert "err-secret-1" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(ZeroDivisionError), redacted_errors(r):  # nothing secret: untouched
        1 / 0  # noqa: B018


def test_filter_on_a_record_built_without_the_factory(r):
    r.add("rec-secret-77")
    try:
        raise RuntimeError("boom rec-secret-77")
    except RuntimeError:
        import sys

        exc_info = sys.exc_info()
    record = logging.makeLogRecord({"msg": "pw %s in %r", "args": ("rec-secret-77", ["x"]),
                                    "exc_info": exc_info, "levelno": 40, "levelname": "ERROR"})
    record.__dict__.update({"password": "extra-pw-1", "dsn": "postgresql://u:pw9@h/d",
                            "payload": {"token": "t-1", "note": "rec-secret-77"}, "n": 3})
    assert RedactingFilter(r).filter(record) is True
    text = logging.Formatter().format(record)
    assert "rec-secret-77" not in text and "pw *** in ['x']" in text and "RuntimeError" in text
    # Nothing left on the record for a structured (JSON) formatter to leak.
    dumped = repr(record.__dict__)
    assert "rec-secret-77" not in dumped and "extra-pw-1" not in dumped and "pw9" not in dumped
    assert "t-1" not in dumped and record.n == 3


# -- properties -------------------------------------------------------------------------------
_secret = st.text(min_size=4, max_size=24).filter(lambda s: s.strip() == s)
_noise = st.text(max_size=60)


@settings(max_examples=150, deadline=None)
@given(secrets=st.lists(_secret, min_size=1, max_size=4), parts=st.lists(_noise, min_size=1,
                                                                          max_size=5),
       data=st.data())
def test_property_registered_secret_never_survives(secrets, parts, data):
    r = Redactor()
    r.add(*secrets)
    pieces = []
    for p in parts:
        pieces.append(p)
        pieces.append(data.draw(st.sampled_from(secrets)))
    text = "".join(pieces)
    out = r.redact(text)
    for s in secrets:
        assert s not in out
    assert r.redact(out) == out


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=200), secret=_secret)
def test_property_idempotent(text, secret):
    r = Redactor()
    r.add(secret)
    once = r.redact(text)
    assert r.redact(once) == once
    assert secret not in once


@settings(max_examples=100, deadline=None)
@given(pw=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=4,
                  max_size=20).filter(lambda s: s.strip() == s),
       prefix=_noise)
def test_property_encoded_forms(pw, prefix):
    r = Redactor()
    r.add(pw)
    text = prefix + json.dumps({"password": pw, "dsn": f"postgresql://u:{pw}@h/d"})
    out = r.redact(text)
    assert pw not in out and json.dumps(pw)[1:-1] not in out
