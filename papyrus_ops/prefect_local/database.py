"""The Prefect server's own PostgreSQL (`<state>/postgres`), started and stopped with it."""

from __future__ import annotations

import re
import secrets
import subprocess
from pathlib import Path
from urllib.parse import quote

from papyrus_ops.prefect_local.processes import (
    HOST,
    PrefectLocalError,
    _port_in_use,
    descendants,
    is_same_process,
    start_time,
    stop_tree,
)

# The server's database. PostgreSQL by default: with SQLite, a UI request that writes while
# flow runs write (task states, events, logs) gets "database is locked" -> 503, which the
# Python client retries but the UI shows as "Oops. Something went wrong." (measured here).
DATABASES = ("postgres", "sqlite")


def _postgres(state: Path, password: str | None = None):
    """The server's PostgreSQL in `<state>/postgres` (SSL, a password role `prefect`); a
    cluster from an earlier `up` keeps its port, so its history survives `down`/`up`."""
    from sandbox.postgres import LocalPostgres

    base = Path(state) / "postgres"
    conf = base / "data" / "postgresql.conf"
    ports = re.findall(r"^port = (\d+)", conf.read_text(), re.M) if conf.exists() else []
    return LocalPostgres(base_dir=base, port=int(ports[-1]) if ports else 0, dbname="prefect",
                         app_user="prefect",
                         app_password=password or secrets.token_urlsafe(24))


def _start_postgres(state: Path) -> tuple[dict, str]:
    """Start it; returns its state record and the server's connection URL (never stored)."""
    pg = _postgres(state)
    if not pg.is_running() and (pg.data_dir / "PG_VERSION").exists() and _port_in_use(pg.port):
        raise PrefectLocalError(f"port {pg.port} of the Prefect database ({pg.base_dir}) is "
                                "taken by another process: free it, or remove that folder")
    try:
        pg.start()  # the role's password is (re)set on every start
    except (subprocess.CalledProcessError, RuntimeError) as e:
        raise PrefectLocalError(f"PostgreSQL for the Prefect server did not start ({e}); "
                                f"see {pg.log_file}, or use --db sqlite") from None
    pid = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
    url = (f"postgresql+asyncpg://{pg.app_user}:{quote(pg.app_password, safe='')}"
           f"@{HOST}:{pg.port}/{pg.dbname}?ssl=require")
    return {"pid": pid, "start": start_time(pid), "port": pg.port,
            "base_dir": str(pg.base_dir)}, url


def _stop_postgres(record: dict) -> list[int]:
    from sandbox.postgres import LocalPostgres

    pid, started = int(record["pid"]), record.get("start")
    if not is_same_process(pid, started):
        return []
    tree = [pid, *(p for p, _ in descendants(pid))]
    LocalPostgres(base_dir=Path(record["base_dir"]), port=int(record["port"])).stop("fast")
    stop_tree(pid, started, timeout=10)  # whatever pg_ctl left
    return tree
