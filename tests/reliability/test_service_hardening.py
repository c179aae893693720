"""Service hardening: /dbcheck needs the token (against the live sandbox task), no SQL is built
from input, errors never echo a secret, the image runs as a non-root user, and no connection —
the service's or the flows' own — can fall back to plaintext."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import httpx
import psycopg2
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.sandbox_state import sku_rows

ROOT = Path(__file__).resolve().parents[2]
SERVICE_PKG = ROOT / "service" / "papyrus"
PLAINTEXT = ("disable", "allow", "prefer")
CANARY_LIKE = "CANARY-svc-pw-0b7d-PAPYRUS"


def live_base(sb) -> str:
    """The running task's address as ECS reports it: networkBindings hostPort."""
    ecs, s = sb.client("ecs"), sb.settings
    arns = ecs.list_tasks(cluster=s.cluster, serviceName=s.service,
                          desiredStatus="RUNNING")["taskArns"]
    tasks = ecs.describe_tasks(cluster=s.cluster, tasks=arns)["tasks"]
    for t in tasks:
        if t.get("lastStatus") != "RUNNING":
            continue
        for c in t["containers"]:
            for b in c.get("networkBindings", []):
                if c["name"] == s.container and b.get("containerPort") == s.container_port:
                    return f"http://{b.get('bindIP') or '127.0.0.1'}:{b['hostPort']}"
    raise AssertionError(f"no RUNNING task with a host port: {tasks}")


def test_live_dbcheck_cannot_be_reached_without_the_token(sb):
    base, token, password = live_base(sb), sb.token, sb.db_password
    before = sku_rows(sb, "app")
    denied = [
        ("GET", {}, None),
        ("POST", {}, None),
        ("GET", {"Authorization": "Bearer wrong-token"}, None),
        ("GET", {"Authorization": f"Bearer {token[:-1]}"}, None),
        ("GET", {"Authorization": f"Bearer {token}x"}, None),
        ("GET", {"Authorization": f"Basic {token}"}, None),
        ("GET", {"Authorization": token}, None),
        ("GET", {"X-Token": token}, None),
        ("GET", {"Cookie": f"token={token}"}, None),
        ("POST", {"Content-Type": "application/json"}, f'{{"token": "{token}"}}'),
    ]
    with httpx.Client(base_url=base, timeout=10) as http:
        for method, headers, body in denied:
            r = http.request(method, "/dbcheck", headers=headers, content=body)
            assert r.status_code == 401, (method, headers, r.status_code, r.text)
            assert token not in r.text and password not in r.text
        for method in ("PUT", "DELETE", "PATCH"):
            r = http.request(method, "/dbcheck", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 405 and r.json() == {"error": "Method Not Allowed"}
        assert sku_rows(sb, "app") == before  # nothing denied reached the database
        r = http.post("/dbcheck", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["result"] == "INSERT 0 1", r.text
        assert r.json()["ssl"] is True and token not in r.text and password not in r.text
    assert sku_rows(sb, "app") == before + 1


# -- no SQL built from input ----------------------------------------------------------------
SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|DROP|CREATE|ALTER|GRANT|TRUNCATE)\b",
                       re.IGNORECASE)
EXECUTORS = {"execute", "executemany", "exec_driver_sql", "mogrify", "copy_expert"}
# Local names that may be executed: init.sql's statements (a file of the package, not input).
ALLOWED_LOCALS = {("schema.py", "statement")}


def _string_of(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def sql_findings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    constants = {t.id for n in tree.body if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name) and _string_of(n.value) is not None}
    out = []
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        # Any string built by formatting that looks like SQL.
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            if SQL_WORDS.search(text):
                out.append(f"{where}: f-string SQL")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
            text = _string_of(node.left) or _string_of(node.right) or ""
            if SQL_WORDS.search(text):
                out.append(f"{where}: SQL built with {type(node.op).__name__}")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "format" and SQL_WORDS.search(
                    _string_of(node.func.value) or "")):
            out.append(f"{where}: SQL built with .format()")
        # What reaches an executor: a literal, a module constant, or an allowed local.
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else \
                node.func.id if isinstance(node.func, ast.Name) else ""
            if (name in EXECUTORS or name == "text") and node.args:
                arg = node.args[0]
                ok = _string_of(arg) is not None or (
                    isinstance(arg, ast.Name) and (arg.id in constants
                                                   or (path.name, arg.id) in ALLOWED_LOCALS))
                if not ok:
                    out.append(f"{where}: {name}() of {ast.unparse(arg)}")
    return out


def test_no_sql_is_built_from_input_in_the_service(tmp_path):
    files = sorted(SERVICE_PKG.rglob("*.py"))
    assert len(files) >= 5
    findings = [f for p in files for f in sql_findings(p)]
    assert findings == []
    # The checker itself catches what it is for.
    probe = tmp_path / "probe.py"
    probe.write_text('def f(cur, sku):\n    cur.execute(f"INSERT INTO skus VALUES (\'{sku}\')")\n'
                     '    cur.execute("DELETE FROM skus WHERE sku = \'%s\'" % sku)\n'
                     '    cur.execute(query_from(sku))\n')
    assert len(sql_findings(probe)) == 5  # 2 formatted strings + 3 executor arguments
    # The request object never reaches the database module at all.
    tree = ast.parse((SERVICE_PKG / "db.py").read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    imported = {a.asname or a.name for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) for a in n.names}
    assert "request" not in names | imported


# -- errors never echo secrets --------------------------------------------------------------
def test_service_errors_never_echo_the_password_or_the_token(sb, caplog):
    from papyrus import create_app, db

    cases = {
        "wrong password": {"host": sb.rds_endpoint, "port": sb.pg.port,
                           "username": "papyrus_app", "password": CANARY_LIKE,
                           "dbname": "papyrus"},
        "nobody listens": {"host": "127.0.0.1", "port": 9, "username": "papyrus_app",
                           "password": CANARY_LIKE, "dbname": "papyrus"},
    }
    for what, secret in cases.items():
        app = create_app({"TESTING": True, "DB_SECRET": secret, "DBCHECK_TOKEN": sb.token})
        try:
            r = app.test_client().post("/dbcheck",
                                       headers={"Authorization": f"Bearer {sb.token}"})
        finally:
            db.dispose_engine(app)
        assert r.status_code == 503, (what, r.status_code, r.get_data(as_text=True))
        text = r.get_data(as_text=True)
        assert CANARY_LIKE not in text and sb.token not in text, (what, text)
        assert set(r.get_json()) == {"error", "reason"}
    assert CANARY_LIKE not in caplog.text and sb.token not in caplog.text


@settings(max_examples=100, deadline=None, database=None)
@given(junk=st.text(max_size=40), where=st.sampled_from(["before", "after", "inside"]))
@example(junk='{"host": "h", "port": "x", "password": ', where="after")
def test_service_secret_errors_never_echo_the_secret_text(junk, where):
    from papyrus import settings as svc_settings

    text = {"before": CANARY_LIKE + junk, "after": junk + CANARY_LIKE,
            "inside": f'{{"password": "{CANARY_LIKE}", "port": {junk!r}}}'}[where]
    try:
        svc_settings.resolve({"DB_SECRET": text}, environ={})
    except svc_settings.ConfigError as e:
        assert CANARY_LIKE not in str(e) and "\n" not in str(e)


# -- non-root container ---------------------------------------------------------------------
def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_container_runs_as_a_non_root_user():
    steps = dockerfile_instructions(ROOT / "service" / "Dockerfile")
    kinds = [k for k, _ in steps]
    assert "CMD" in kinds and "USER" in kinds
    cmd_at = max(i for i, k in enumerate(kinds) if k in ("CMD", "ENTRYPOINT"))
    users = [(i, v) for i, (k, v) in enumerate(steps) if k == "USER"]
    last_at, user = users[-1]
    assert last_at < cmd_at, "USER must come before CMD"
    name = user.split(":")[0]
    assert name not in ("root", "0", ""), user
    # A numeric uid must be one the image created (useradd --uid N), a name likewise.
    created = " ".join(v for k, v in steps if k == "RUN")
    assert re.search(rf"useradd\b[^&;]*(--uid {name}\b|\s{name}(\s|$))", created), created


# -- never plaintext ------------------------------------------------------------------------
@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mode=st.one_of(st.sampled_from(PLAINTEXT + ("require", "verify-ca", "verify-full")),
                      st.text(max_size=12)),
       spelled=st.sampled_from(["{}", "{}".upper(), " {} ", "{}\t"]),
       via=st.sampled_from(["env", "config"]))
@example(mode="disable", spelled="{}", via="env")
@example(mode="prefer", spelled=" {} ", via="config")
def test_service_never_accepts_a_plaintext_sslmode(mode, spelled, via):
    from papyrus import settings as svc_settings

    mode = spelled.format(mode) if spelled != "{}".upper() else mode.upper()
    secret = {"host": "db", "port": 5432, "username": "u", "password": "pw-123456",
              "dbname": "papyrus"}
    config = {"DB_SECRET": secret}
    environ = {}
    if via == "env":
        environ["PGSSLMODE"] = mode
    else:
        config = {"DATABASE": {**svc_settings._from_secret(secret), "sslmode": mode}}
    try:
        params = svc_settings.resolve(config, environ=environ)
    except svc_settings.ConfigError:
        return
    assert params["sslmode"] in ("require", "verify-ca", "verify-full")
    assert mode.strip().lower() not in PLAINTEXT


def test_flow_connections_are_always_tls_even_with_pgsslmode_disable(sb, monkeypatch):
    from tasks.db import connect_params, read_db_secret
    from tasks.insert_check import insert_cli_row

    secret = read_db_secret.fn(sb.client("secretsmanager"), sb.settings.db_secret_id)
    assert connect_params(secret, sb.settings)["sslmode"] == "require"
    strict = dataclasses.replace(sb.settings, db_ssl_root_cert=str(sb.pg.ca_cert))
    assert connect_params(secret, strict)["sslmode"] == "verify-full"
    # libpq reads PGSSLMODE only when no sslmode is given: the flows always give one.
    monkeypatch.setenv("PGSSLMODE", "disable")
    rec = insert_cli_row.fn(secret, sb.settings, name="reliability tls check")
    assert rec["ok"] and rec["ssl"] is True and rec["ssl_version"].startswith("TLS"), rec
    # And the server (like RDS with rds.force_ssl=1) refuses a plaintext session outright.
    with pytest.raises(psycopg2.OperationalError, match="no encryption|SSL off"):
        psycopg2.connect(**sb.pg.connect_kwargs(sslmode="disable"))


@pytest.mark.parametrize("mode", PLAINTEXT)
def test_connect_params_cannot_be_talked_into_plaintext(sb, mode):
    """Found by this suite, fixed in 2b2d916: `params.update(extra)` let a keyword override
    sslmode (connect(..., sslmode='prefer') silently dropped TLS)."""
    from tasks.db import connect, connect_params, read_db_secret

    secret = read_db_secret.fn(sb.client("secretsmanager"), sb.settings.db_secret_id)
    with pytest.raises(ValueError, match="refused"):
        connect_params(secret, sb.settings, sslmode=mode)
    with pytest.raises(ValueError, match="refused"):
        connect(secret, sb.settings, sslmode=mode)
    strict = dataclasses.replace(sb.settings, db_ssl_root_cert=str(sb.pg.ca_cert))
    assert connect_params(secret, strict, sslmode="require")["sslmode"] == "verify-full"
