"""3. Service vs database: /healthz and /dbcheck under wrk, beside pgbench and a bare Flask app.

* PostgreSQL: the sandbox's own helper (`sandbox.postgres.LocalPostgres`: initdb, SSL with a
  generated CA, scram over TCP only with SSL, like RDS with rds.force_ssl=1), schema applied
  from `service/papyrus/sql/init.sql` as the app role.
* Papyrus: `python -m gunicorn --config python:papyrus.gunicorn_conf papyrus.wsgi:app` with
  the Dockerfile's environment (PAPYRUS_DB_STARTUP_CHECK=1, PGSSLMODE=require) and the
  defaults (PAPYRUS_WORKERS 2, PAPYRUS_THREADS 4, gthread, access log to stdout — here a file).
* the bare hello-world (`bench/hello_app.py`) under the same gunicorn config.
* wrk on loopback, 1 / 8 / 32 connections, 10 s (a Lua script adds the bearer token for
  /dbcheck and prints p50/p99 and the error counts as JSON).
* pgbench with the single-row INSERT the /dbcheck does, same client counts, over SSL
  (PGSSLMODE=require), -n -T 10.
The four are interleaved per client count and repeated, so load drift hits them alike.

`variants` runs the same /dbcheck measurement on modified copies of service/ (outside the
repo, under $TMPDIR/papyrus-bench) to test a proposed change before anyone edits the real service.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from bench.common import PG_BIN, PY, ROOT, TMP, free_port, log, save, stats

CONNS = (1, 8, 32)
DBCHECK_GOAL = 0.20
HEALTHZ_GOAL = 0.90
PATCHES = ROOT / "bench" / "patches"

LUA = """
{header}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
"""


class Postgres:
    def __init__(self, base: Path):
        from sandbox.postgres import LocalPostgres

        shutil.rmtree(base, ignore_errors=True)
        self.pg = LocalPostgres(base_dir=base, hostnames=["127.0.0.1"]).start()
        sql = (ROOT / "service" / "papyrus" / "sql" / "init.sql").read_text()
        self.pg.psql_admin(f"SET ROLE {self.pg.app_user};\n{sql}", dbname=self.pg.dbname)

    def secret(self) -> str:
        return json.dumps(self.pg.secret_dict(host="127.0.0.1"))

    def libpq_env(self) -> dict[str, str]:
        p = self.pg
        return {"PGHOST": "127.0.0.1", "PGPORT": str(p.port), "PGUSER": p.app_user,
                "PGPASSWORD": p.app_password, "PGDATABASE": p.dbname, "PGSSLMODE": "require"}

    def rows(self, prefix: str) -> int:
        return int(self.pg.psql_admin(
            f"SELECT count(*) FROM skus WHERE sku LIKE '{prefix}%'", dbname=self.pg.dbname))

    def truncate(self) -> None:
        self.pg.psql_admin("TRUNCATE skus; VACUUM ANALYZE skus;", dbname=self.pg.dbname)

    def stop(self) -> None:
        self.pg.stop("immediate")


class Gunicorn:
    """One gunicorn (master + workers) in its own session, stopped by its pid."""

    def __init__(self, name: str, app: str, env: dict[str, str], pythonpath: Path,
                 cwd: Path = ROOT):
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = TMP / f"gunicorn-{name}.log"
        full = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(TMP),
                "PYTHONPATH": str(pythonpath), "PYTHONUNBUFFERED": "1",
                "PAPYRUS_BIND": f"127.0.0.1:{self.port}", **env}
        self.proc = subprocess.Popen(
            [PY, "-m", "gunicorn", "--config", "python:papyrus.gunicorn_conf", app],
            env=full, cwd=cwd, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn {name} exited {self.proc.returncode}: "
                                   f"{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gunicorn {name} did not answer /healthz")
            time.sleep(0.2)

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def wrk(url: str, conns: int, seconds: int, token: str | None = None) -> dict:
    header = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    script = TMP / f"wrk-{'auth' if token else 'plain'}.lua"
    script.write_text(LUA.format(header=header))
    threads = 1 if conns == 1 else 2
    r = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "-s", str(script),
                        url], capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"WRKJSON (\{.*\})", r.stdout)
    if not m:
        raise RuntimeError(f"wrk failed: {r.stdout[-1000:]} {r.stderr[-1000:]}")
    d = json.loads(m.group(1))
    secs = d["duration_us"] / 1e6
    errors = d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"]
    return {"rps": round((d["requests"] - d["status"]) / secs, 1),
            "p50_ms": round(d["p50_us"] / 1000, 3), "p99_ms": round(d["p99_us"] / 1000, 3),
            "requests": d["requests"], "errors": errors, "non_2xx": d["status"]}


def pgbench(db: Postgres, conns: int, seconds: int) -> dict:
    script = TMP / "pgbench-insert.sql"
    script.write_text("INSERT INTO skus(sku,name,source) VALUES "
                      "('SKU-BENCH-' || :client_id || '-' || random(), 'b', 'app');\n")
    env = {**os.environ, **db.libpq_env()}
    r = subprocess.run([str(PG_BIN / "pgbench"), "-n", "-T", str(seconds), "-c", str(conns),
                        "-j", str(min(conns, 2)), "-f", str(script)],
                       env=env, capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", r.stdout)
    lat = re.search(r"latency average = ([\d.]+) ms", r.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", r.stdout)
    if not m:
        raise RuntimeError(f"pgbench failed: {r.stdout[-1000:]} {r.stderr[-1000:]}")
    return {"tps": float(m.group(1)), "latency_avg_ms": float(lat.group(1)) if lat else None,
            "failed": int(failed.group(1)) if failed else 0}


def papyrus_env(db: Postgres, token: str, extra: dict | None = None) -> dict[str, str]:
    # The Dockerfile's ENV plus the two secrets ECS injects; gunicorn defaults otherwise.
    return {"PAPYRUS_DB_STARTUP_CHECK": "1", "PGSSLMODE": "require",
            "PAPYRUS_DB_SECRET": db.secret(), "PAPYRUS_DBCHECK_TOKEN": token, **(extra or {})}


def service_copy(name: str, patch: Path | None) -> Path:
    """A copy of service/ outside the repo's tracked tree, with `patch` applied."""
    dst = TMP / f"service-{name}"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(ROOT / "service", dst, ignore=shutil.ignore_patterns(
        "__pycache__", "*.egg-info", "tests"))
    if patch is not None:
        subprocess.run(["patch", "-p2", "-d", str(dst), "-i", str(patch)], check=True,
                       capture_output=True)
    return dst


def micro(db: Postgres, n: int = 1000) -> dict:
    """Where one /dbcheck's time goes, in this process, one connection, no gunicorn: the
    statements alone (psycopg2), the same through SQLAlchemy as `papyrus.db` does it, and
    the Flask app through its test client. Milliseconds per call, median of 3 batches."""
    import statistics

    import psycopg2
    from papyrus import create_app
    from sqlalchemy import create_engine

    sql = "INSERT INTO skus (sku, name, source) VALUES (%s, 'micro', 'app')"
    ssl = ("SELECT s.ssl, s.version, current_database() FROM pg_stat_ssl AS s "
           "WHERE s.pid = pg_backend_pid()")
    conn = psycopg2.connect(**db.pg.connect_kwargs())
    cur = conn.cursor()
    kw = db.pg.connect_kwargs()

    def per_call(fn) -> float:
        for i in range(50):
            fn(i)
        batches = []
        for _ in range(3):
            t = time.perf_counter()
            for i in range(n):
                fn(i)
            batches.append((time.perf_counter() - t) / n * 1000)
        return round(statistics.median(batches), 3)

    def sku(prefix, i):
        return f"SKU-MICRO-{prefix}-{i}-{secrets.token_hex(4)}"

    out: dict = {}
    conn.autocommit = True
    out["SELECT 1 (one round trip)"] = per_call(lambda i: cur.execute("SELECT 1"))
    out["INSERT, autocommit (pgbench's statement)"] = per_call(
        lambda i: cur.execute(sql, (sku("a", i),)))
    out["SELECT pg_stat_ssl row"] = per_call(lambda i: (cur.execute(ssl), cur.fetchone()))
    conn.autocommit = False

    def service_sequence(i):
        conn.autocommit = True
        cur.execute("SELECT 1")  # pool_pre_ping
        conn.autocommit = False
        cur.execute(sql, (sku("b", i),))  # BEGIN + INSERT
        cur.execute(ssl)
        cur.fetchone()
        conn.commit()

    out["ping + BEGIN, INSERT, SSL SELECT, COMMIT (psycopg2)"] = per_call(service_sequence)
    eng = create_engine("postgresql+psycopg2://", connect_args=kw, pool_size=2, max_overflow=2,
                        pool_pre_ping=True)

    def as_service(i):
        with eng.begin() as c:
            c.exec_driver_sql(sql.replace("%s", "%(sku)s"), {"sku": sku("c", i)})
            c.exec_driver_sql(ssl).one()

    out["the same through SQLAlchemy, as papyrus.db did before (pre-ping on)"] = per_call(
        as_service)
    app = create_app({"DB_SECRET": db.secret(), "DBCHECK_TOKEN": "micro-token"})
    from papyrus import db as papyrus_db

    with app.app_context():
        out["papyrus.db.insert_sku as it is now"] = per_call(
            lambda i: papyrus_db.insert_sku(sku("d", i), "micro", "app"))
    client = app.test_client()
    out["Flask test client: /healthz"] = per_call(lambda i: client.get("/healthz"))
    out["Flask test client: /dbcheck"] = per_call(
        lambda i: client.get("/dbcheck", headers={"Authorization": "Bearer micro-token"}))
    eng.dispose()
    papyrus_db.dispose_engine(app)
    conn.close()
    return out


def _agg(rows: list[dict], key: str) -> dict:
    return stats(r[key] for r in rows)


def run(runs: int = 3, seconds: int = 10, conns=CONNS, variants: bool = True) -> dict:
    db = Postgres(TMP / "pg-service")
    token = secrets.token_urlsafe(24)
    servers: dict[str, Gunicorn] = {}
    data: dict = {"seconds": seconds, "runs": runs, "conns": list(conns), "results": {},
                  "gunicorn": {"workers": 2, "threads": 4, "worker_class": "gthread"}}
    try:
        servers["papyrus"] = Gunicorn("papyrus", "papyrus.wsgi:app", papyrus_env(db, token),
                                      ROOT / "service")
        servers["hello"] = Gunicorn("hello", "bench.hello_app:app", {},
                                    ROOT / "service")
        # Warm-up: pools filled, code paths imported, the table has a few rows.
        for url, tok in ((servers["papyrus"].base + "/dbcheck", token),
                         (servers["papyrus"].base + "/healthz", None),
                         (servers["hello"].base + "/healthz", None)):
            wrk(url, 8, 2, tok)
        pgbench(db, 8, 2)
        res: dict = {str(c): {"healthz": [], "hello": [], "dbcheck": [], "pgbench": []}
                     for c in conns}
        for i in range(runs):
            for c in conns:
                cell = res[str(c)]
                cell["healthz"].append(wrk(servers["papyrus"].base + "/healthz", c, seconds))
                cell["hello"].append(wrk(servers["hello"].base + "/healthz", c, seconds))
                cell["dbcheck"].append(wrk(servers["papyrus"].base + "/dbcheck", c, seconds,
                                           token))
                cell["pgbench"].append(pgbench(db, c, seconds))
                log(f"service run {i + 1}/{runs} c={c}: healthz {cell['healthz'][-1]['rps']} "
                    f"hello {cell['hello'][-1]['rps']} dbcheck {cell['dbcheck'][-1]['rps']} "
                    f"(errors {cell['dbcheck'][-1]['errors']}) pgbench "
                    f"{cell['pgbench'][-1]['tps']} tps")
        for c in conns:
            cell = res[str(c)]
            summary = {name: {k: _agg(cell[name], k) for k in ("rps", "p50_ms", "p99_ms")}
                       for name in ("healthz", "hello", "dbcheck")}
            summary["pgbench"] = {k: _agg(cell["pgbench"], k) for k in ("tps", "latency_avg_ms")}
            # Ratios per run (paired: measured back to back), then their median.
            summary["dbcheck_share_of_pgbench"] = stats(
                d["rps"] / p["tps"] for d, p in zip(cell["dbcheck"], cell["pgbench"],
                                                    strict=True))
            summary["healthz_vs_hello"] = stats(
                h["rps"] / b["rps"] for h, b in zip(cell["healthz"], cell["hello"], strict=True))
            summary["dbcheck_errors"] = sum(r["errors"] for r in cell["dbcheck"])
            summary["healthz_errors"] = sum(r["errors"] for r in cell["healthz"])
            data["results"][str(c)] = {"summary": summary, "raw": cell}
        data["rows_inserted_by_dbcheck"] = db.rows("SKU-APP-")
    finally:
        for s in servers.values():
            s.stop()
    if variants:
        data["variants"] = run_variants(db, token, seconds=seconds, runs=runs)
    data["micro"] = micro(db, n=300 if seconds < 5 else 1000)
    log("service micro (ms per call): " + "; ".join(f"{k} {v}" for k, v in data["micro"].items()))
    db.stop()
    save("service", data)
    return data


def run_variants(db: Postgres, token: str, seconds: int, runs: int, conns=(8,)) -> dict:
    """/dbcheck on copies of service/: unchanged, and with each proposed patch, interleaved."""
    out: dict = {}
    names = ["baseline"] + sorted(p.stem for p in PATCHES.glob("*.patch"))
    servers = {}
    try:
        for name in names:
            patch = None if name == "baseline" else PATCHES / f"{name}.patch"
            path = service_copy(name, patch)
            extra = {}
            env_file = PATCHES / f"{name}.env"
            if env_file.exists():
                for line in env_file.read_text().splitlines():
                    if "=" in line and not line.startswith("#"):
                        k, v = line.split("=", 1)
                        extra[k.strip()] = v.strip()
            servers[name] = Gunicorn(f"variant-{name}", "papyrus.wsgi:app",
                                     papyrus_env(db, token, extra), path, cwd=path)
            wrk(servers[name].base + "/dbcheck", 8, 2, token)
        rows: dict = {n: {str(c): [] for c in conns} for n in names}
        pg: dict = {str(c): [] for c in conns}
        for _ in range(runs):
            for c in conns:
                for name in names:
                    rows[name][str(c)].append(wrk(servers[name].base + "/dbcheck", c, seconds,
                                                  token))
                pg[str(c)].append(pgbench(db, c, seconds))
                log(f"variants c={c}: " + ", ".join(
                    f"{n} {rows[n][str(c)][-1]['rps']}" for n in names)
                    + f"; pgbench {pg[str(c)][-1]['tps']}")
        for name in names:
            desc = PATCHES / f"{name}.md"
            out[name] = {"description": desc.read_text().strip() if desc.exists() else "",
                         "results": {c: {"rps": _agg(v, "rps"), "p50_ms": _agg(v, "p50_ms"),
                                         "p99_ms": _agg(v, "p99_ms"),
                                         "errors": sum(r["errors"] for r in v),
                                         "share_of_pgbench": stats(
                                             r["rps"] / p["tps"]
                                             for r, p in zip(v, pg[c], strict=True)),
                                         "raw": v}
                                     for c, v in rows[name].items()}}
        out["_pgbench"] = {c: {"tps": stats(p["tps"] for p in v)} for c, v in pg.items()}
    finally:
        for s in servers.values():
            s.stop()
    return out
