"""/dbcheck against the session's real SSL-only PostgreSQL, through the Flask test client."""

import re
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from papyrus import create_app, db
from support.canaries import CANARY, TOKEN, auth
from support.postgres import RDS_HOST

SKU = re.compile(r"^SKU-APP-\d{8}T\d{6}Z-[0-9a-f]{12}$")


def count(sql) -> int:
    return sql("SELECT count(*) FROM skus")[0][0]


def test_authorized_dbcheck_inserts_one_app_row_over_ssl(client, sql, pg, caplog):
    before = count(sql)
    r = client.post("/dbcheck", headers=auth())
    body = r.get_json()
    assert r.status_code == 200, body
    assert body["result"] == "INSERT 0 1"
    assert SKU.match(body["sku"])
    assert body["ssl"] is True and body["ssl_version"].startswith("TLS")
    assert body["db"] == "papyrus"
    assert r.headers["Cache-Control"] == "no-store"
    assert sql("SELECT source, name FROM skus WHERE sku = %s", (body["sku"],)) == [
        ("app", "dbcheck")]
    assert count(sql) == before + 1
    # The server's own view: every session the app holds open (its pool) is encrypted.
    sessions = pg.psql_admin(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
        "WHERE a.application_name = 'papyrus'")
    assert sessions and set(sessions.split()) == {"t"}
    assert CANARY not in r.get_data(as_text=True) + caplog.text


def test_get_works_too_and_each_call_is_a_new_sku(client):
    skus = {client.get("/dbcheck", headers=auth()).get_json()["sku"] for _ in range(3)}
    assert len(skus) == 3


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer    "},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": f"Token {TOKEN}"},
    {"Authorization": TOKEN},
    {"X-Token": TOKEN},
], ids=["missing", "empty", "scheme-only", "empty-token", "blank-token", "basic", "token",
        "no-scheme", "other-header"])
def test_missing_token_is_401_with_challenge(client, sql, headers):
    before = count(sql)
    r = client.post("/dbcheck", headers=headers)
    assert r.status_code == 401
    assert r.get_json() == {"error": "bearer token required"}
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="papyrus"'
    assert count(sql) == before


@pytest.mark.parametrize("token", [
    "wrong", TOKEN[:-1], TOKEN + "x", TOKEN.upper(), "x" * 4096, "トークン", "' OR '1'='1",
])
def test_wrong_token_is_401_invalid_token(client, sql, token):
    before = count(sql)
    r = client.get("/dbcheck", headers=auth(token))
    assert r.status_code == 401
    assert r.get_json() == {"error": "invalid token"}
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert count(sql) == before


@pytest.mark.parametrize("configured", [None, "", "   "])
def test_no_token_configured_is_403_even_with_a_header(pg, configured):
    app = create_app({"DB_SECRET": pg.secret_dict(), "DBCHECK_TOKEN": configured})
    for headers in ({}, auth(), auth("")):
        r = app.test_client().post("/dbcheck", headers=headers)
        assert r.status_code == 403
        assert "no token configured" in r.get_json()["error"]


INJECTIONS = [
    "'; DROP TABLE skus; --",
    "x' OR '1'='1",
    "SKU-APP-1'); DELETE FROM skus; --",
    "\\'; TRUNCATE skus; --",
    "$$; DROP TABLE skus; $$",
    "%(sku)s",
    "%s%s%s",
]


def test_sql_injection_in_every_input_changes_nothing(client, sql):
    before = count(sql)
    ok = 0
    for payload in INJECTIONS:
        headers = {**auth(), "User-Agent": payload, "X-Forwarded-For": payload,
                   "X-Sku": payload, "Cookie": f"sku={payload}"}
        for call in (
            lambda p=payload, h=headers: client.post("/dbcheck", query_string={"sku": p},
                                                     data={"sku": p, "name": p}, headers=h),
            lambda p=payload, h=headers: client.post("/dbcheck", json={"sku": p, "name": p},
                                                     headers=h),
            lambda p=payload, h=headers: client.get("/dbcheck", query_string={"name": p},
                                                    headers=h),
        ):
            r = call()
            assert r.status_code == 200, r.get_data(as_text=True)
            assert SKU.match(r.get_json()["sku"])
            ok += 1
        # The path and the token themselves.
        assert client.get(f"/dbcheck/{payload}", headers=headers).status_code == 404
        assert client.get("/dbcheck", headers=auth(payload)).status_code == 401
    # Exactly one generated row per authorized call, none carrying a payload.
    assert count(sql) == before + ok
    assert sql("SELECT count(*) FROM skus WHERE sku !~ '^SKU-(APP|CLI)-' "
               "OR name NOT IN ('', 'dbcheck')") == [(0,)]


def test_database_down_is_503_with_a_short_reason(pg):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connection refused
    port = closed.getsockname()[1]
    try:
        cases = {
            "connection refused": {"DB_SECRET": {**pg.secret_dict(), "port": port}},
            "authentication failed": {"DB_SECRET": {**pg.secret_dict(), "password": "nope"}},
            "database does not exist": {"DB_SECRET": {**pg.secret_dict(), "dbname": "nope"}},
            "configuration error": {"DB_SECRET": '{"password": "' + CANARY},
        }
        for reason, config in cases.items():
            app = create_app({**config, "DBCHECK_TOKEN": TOKEN})
            r = app.test_client().post("/dbcheck", headers=auth())
            assert r.status_code == 503
            assert r.get_json() == {"error": "database unavailable", "reason": reason}
            assert CANARY not in r.get_data(as_text=True)
            assert app.test_client().get("/healthz").status_code == 200
    finally:
        closed.close()


def test_a_server_that_never_answers_is_a_timeout(pg):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshake; nobody ever answers
        config = {"DB_SECRET": {**pg.secret_dict(), "port": silent.getsockname()[1]},
                  "DB_CONNECT_TIMEOUT": 1, "DBCHECK_TOKEN": TOKEN}
        r = create_app(config).test_client().post("/dbcheck", headers=auth())
    assert r.status_code == 503 and r.get_json()["reason"] == "timeout"


def test_verify_full_through_pghostaddr_checks_the_rds_host_name(pg, monkeypatch):
    # Like an SSM port-forward: the socket goes to 127.0.0.1, TLS checks the RDS name.
    monkeypatch.setenv("PGHOSTADDR", "127.0.0.1")
    monkeypatch.setenv("PGSSLROOTCERT", str(pg.ca_cert))
    good = create_app({"DB_SECRET": pg.secret_dict(host=RDS_HOST), "DBCHECK_TOKEN": TOKEN})
    r = good.test_client().post("/dbcheck", headers=auth())
    assert r.status_code == 200 and r.get_json()["ssl"] is True
    db.dispose_engine(good)

    wrong = create_app({"DB_SECRET": pg.secret_dict(host="other.example.com"),
                        "DBCHECK_TOKEN": TOKEN})
    r = wrong.test_client().post("/dbcheck", headers=auth())
    assert r.status_code == 503 and r.get_json()["reason"] == "ssl verification failed"


def test_schema_missing_is_503(pg):
    pg.psql_admin("DROP DATABASE IF EXISTS empty")
    pg.psql_admin(f"CREATE DATABASE empty OWNER {pg.app_user}")
    app = create_app({"DB_SECRET": {**pg.secret_dict(), "dbname": "empty"},
                      "DBCHECK_TOKEN": TOKEN})
    r = app.test_client().post("/dbcheck", headers=auth())
    assert r.status_code == 503 and r.get_json()["reason"] == "schema missing"
    db.dispose_engine(app)


# -- property: whatever arrives, never a 500, never a 200 without the exact token -----------
header_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
                      max_size=60)
authorization = st.one_of(
    st.none(),
    header_text,
    st.builds(lambda s, t: f"{s} {t}", st.sampled_from(["Bearer", "bearer", "Basic", ""]),
              header_text),
    st.builds(lambda a, b: f"Bearer {a}{TOKEN}{b}", header_text, header_text),
    st.just(f"Bearer {TOKEN}"),
)


# database=None: no example database written into the repository.
@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
    path=st.sampled_from(["/dbcheck", "/dbcheck/", "/dbcheck/x", "/DBCHECK", "/dbcheck%00"]),
    authz=authorization,
    extra=st.dictionaries(st.sampled_from(["X-Forwarded-For", "Content-Type", "User-Agent",
                                           "Cookie", "X-Sku"]), header_text, max_size=3),
    query=st.dictionaries(header_text, header_text, max_size=3),
    body=st.binary(max_size=200),
)
def test_request_handling_property(client, method, path, authz, extra, query, body):
    headers = dict(extra)
    if authz is not None:
        headers["Authorization"] = authz
    r = client.open(path, method=method, headers=headers, query_string=query, data=body)
    assert r.status_code != 500
    exact = authz is not None and authz.partition(" ")[0].lower() == "bearer" and (
        authz.partition(" ")[2].strip() == TOKEN)
    if r.status_code == 200 and method != "OPTIONS":
        assert exact and path == "/dbcheck" and method in ("GET", "POST", "HEAD")
    if path == "/dbcheck" and method in ("GET", "POST") and exact:
        assert r.status_code == 200 and r.get_json()["result"] == "INSERT 0 1"
    if r.status_code == 401:
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in r.get_data(as_text=True)
