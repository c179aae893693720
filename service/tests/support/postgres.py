"""A real PostgreSQL 15 for the service tests, from the machine's binaries (PAPYRUS_PG_BIN, else
/usr/lib/postgresql/15/bin, else PATH): like RDS with rds.force_ssl=1, TCP connections must use
TLS and a password (hostssl + scram-sha-256, plain TCP rejected); the server certificate comes
from a throwaway CA (trustme) and names 127.0.0.1, localhost and the extra host names, so a client
can verify it (verify-full). The superuser only connects over the Unix socket.

PostgreSQL refuses to run as root: as root, every server command runs as `postgres` (runuser).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg2
import trustme
from papyrus import schema

# The certificate also names this host, so verify-full can be tested through PGHOSTADDR.
RDS_HOST = "papyrus-db.c0ffee.us-west-2.rds.amazonaws.com"
PG_BIN = Path(os.environ.get("PAPYRUS_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin(name: str) -> str:
    path = PG_BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} not found in {PG_BIN} or on PATH")
    return found


def _as_owner() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class LocalPostgres:
    """`start()` initialises (once) and starts the server; `stop()`/`start()` keep its port and
    data; `destroy()` removes it. `app_user` owns `dbname` and logs in with `app_password`."""

    def __init__(self, app_password: str, hostnames: list[str] | tuple[str, ...] = (),
                 dbname: str = "papyrus", app_user: str = "papyrus_app") -> None:
        for name in (app_user, dbname):
            if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
                raise ValueError(f"not a plain identifier: {name!r}")
        self.app_password, self.dbname, self.app_user = app_password, dbname, app_user
        self.hostnames = ["127.0.0.1", "localhost", *hostnames]
        self.base_dir = Path(tempfile.mkdtemp(prefix="papyrus-svc-pg-"))
        self.data_dir, self.socket_dir = self.base_dir / "data", self.base_dir / "sock"
        self.ca_cert = self.base_dir / "ca.crt"
        self.port = free_port()

    def _init(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        os.chmod(self.base_dir, 0o755)  # noqa: S103 - the server's user must traverse it
        if os.geteuid() == 0:  # ... and every folder above (mkdtemp makes them 0700)
            for parent in self.base_dir.parents:
                if not parent.stat().st_mode & 0o001:
                    os.chmod(parent, parent.stat().st_mode | 0o011)  # noqa: S103 - traverse only
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.base_dir, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
        subprocess.run([*_as_owner(), _bin("initdb"), "-D", str(self.data_dir), "-U", "postgres",
                        "--auth-local=trust", "--auth-host=reject", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, cwd="/")
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(self.ca_cert))
        leaf = ca.issue_cert(*self.hostnames)
        leaf.cert_chain_pems[0].write_to_path(str(self.data_dir / "server.crt"))
        leaf.private_key_pem.write_to_path(str(self.data_dir / "server.key"))
        os.chmod(self.data_dir / "server.key", 0o600)
        if os.geteuid() == 0:
            for name in ("server.crt", "server.key"):
                shutil.chown(self.data_dir / name, "postgres", "postgres")
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.socket_dir}'\n"
                       "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        (self.data_dir / "pg_hba.conf").write_text(
            "local all postgres trust\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "hostnossl all all 127.0.0.1/32 reject\n")

    def start(self) -> LocalPostgres:
        self._init()
        subprocess.run([*_as_owner(), _bin("pg_ctl"), "-D", str(self.data_dir), "-l",
                        str(self.base_dir / "postgres.log"), "-w", "-t", "60", "start"],
                       check=True, capture_output=True, cwd="/")
        # SQL on stdin, so the password is never on a command line (nor, on error, in the log).
        pw = self.app_password.replace("'", "''")
        verb = "ALTER" if self.psql_admin(
            f"SELECT 1 FROM pg_roles WHERE rolname = '{self.app_user}'") else "CREATE"  # noqa: S608
        self.psql_admin("SET log_min_error_statement = panic; SET log_statement = 'none';\n"
                        f"{verb} ROLE {self.app_user} LOGIN PASSWORD '{pw}'")
        if not self.psql_admin(f"SELECT 1 FROM pg_database WHERE datname = '{self.dbname}'"):  # noqa: S608
            self.psql_admin(f"CREATE DATABASE {self.dbname} OWNER {self.app_user}")
        return self

    def stop(self) -> None:
        subprocess.run([*_as_owner(), _bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                        "-w", "stop"], check=False, capture_output=True, cwd="/")

    def destroy(self) -> None:
        subprocess.run([*_as_owner(), _bin("pg_ctl"), "-D", str(self.data_dir), "-m",
                        "immediate", "-w", "stop"], check=False, capture_output=True, cwd="/")
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def psql_admin(self, sql: str, dbname: str = "postgres") -> str:
        """`sql` as the superuser over the Unix socket; psql's unaligned output, stripped."""
        r = subprocess.run([*_as_owner(), _bin("psql"), "-h", str(self.socket_dir), "-p",
                            str(self.port), "-U", "postgres", "-d", dbname, "-v",
                            "ON_ERROR_STOP=1", "-qAt", "-f", "-"],
                           input=sql, capture_output=True, text=True, cwd="/")
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr.strip().replace(self.app_password, '***')}")
        return r.stdout.strip()

    def secret_dict(self, host: str = "127.0.0.1") -> dict:
        """The Secrets Manager JSON shape the service reads."""
        return {"host": host, "port": self.port, "username": self.app_user,
                "password": self.app_password, "dbname": self.dbname}

    def connect_kwargs(self, **overrides) -> dict:
        return {"host": "127.0.0.1", "port": self.port, "user": self.app_user,
                "password": self.app_password, "dbname": self.dbname, "sslmode": "require",
                "connect_timeout": 5, **overrides}


def apply_schema(server: LocalPostgres) -> None:
    # As the application role, like the schema_init flow on RDS: it owns what it creates.
    with psycopg2.connect(**server.connect_kwargs()) as conn, conn.cursor() as cur:
        for statement in schema.split_statements(schema.init_sql()):
            cur.execute(statement)
    conn.close()

