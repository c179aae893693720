"""A real PostgreSQL 15 for tests and the sandbox, started from the machine's own binaries.

One implementation for both: `initdb` into a folder, SSL on with a CA and server certificate
generated at start, a free port on 127.0.0.1, and a non-superuser application role with a
password. PostgreSQL refuses to run as root, so as root every server command runs as the
`postgres` user (``runuser``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = Path(os.environ.get("PAPYRUS_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin(name: str) -> str:
    path = PG_BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def _as_owner() -> list[str]:
    """Prefix that runs a server command as `postgres` when we are root."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def write_certificates(folder: Path, hostnames: list[str]) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for `hostnames` (plus localhost/127.0.0.1)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "papyrus sandbox CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = ["localhost", *hostnames]
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(names)]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[-1])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_path, crt_path, key_path = folder / "ca.crt", folder / "server.crt", folder / "server.key"
    ca_path.write_bytes(ca.public_bytes(pem))
    crt_path.write_bytes(cert.public_bytes(pem))
    key_path.write_bytes(
        key.private_bytes(
            pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return ca_path, crt_path, key_path


@dataclass
class LocalPostgres:
    """A PostgreSQL server in `base_dir` (a temporary folder when not given).

    `app_user`/`app_password` is the non-superuser role the service uses; it owns `dbname`.
    The superuser `postgres` only connects over the local Unix socket (trust), never TCP.
    """

    base_dir: Path | None = None
    port: int = 0
    dbname: str = "papyrus"
    app_user: str = "papyrus_app"
    app_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    hostnames: list[str] = field(default_factory=list)
    _owns_dir: bool = False

    def __post_init__(self) -> None:
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="papyrus-pg-"))
            self._owns_dir = True
        self.base_dir = Path(self.base_dir)
        self.port = self.port or free_port()

    # paths -------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "sock"

    @property
    def ca_cert(self) -> Path:
        return self.base_dir / "ca.crt"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    # lifecycle ---------------------------------------------------------------------------
    def _chown(self, *paths: Path) -> None:
        if os.geteuid() == 0:
            for p in paths:
                shutil.chown(p, "postgres", "postgres")

    def init(self) -> None:
        """initdb, certificates and server settings. Safe to call on an existing cluster."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o755)  # noqa: S103 - postgres must traverse it
        if os.geteuid() == 0:
            # `postgres` must also traverse every folder above (mkdtemp makes them 0700).
            for parent in self.base_dir.resolve().parents:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o011)  # noqa: S103 - traverse only
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.socket_dir.mkdir(exist_ok=True)
        self._chown(self.base_dir, self.socket_dir)
        subprocess.run(
            [*_as_owner(), _bin("initdb"), "-D", str(self.data_dir), "-U", "postgres",
             "--auth-local=trust", "--auth-host=reject", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, cwd="/",
        )
        certs = self.data_dir
        _, crt, key = write_certificates(Path(tempfile.mkdtemp()), self.hostnames)
        shutil.copy(crt.parent / "ca.crt", self.ca_cert)
        shutil.copy(crt, certs / "server.crt")
        shutil.copy(key, certs / "server.key")
        shutil.rmtree(crt.parent)
        os.chmod(certs / "server.key", 0o600)
        self._chown(certs / "server.crt", certs / "server.key")
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# papyrus sandbox\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\n"
            )
        # Like RDS with rds.force_ssl=1: TCP connections must use SSL, with a password.
        (self.data_dir / "pg_hba.conf").write_text(
            "local all postgres trust\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "hostnossl all all 127.0.0.1/32 reject\n"
        )

    def start(self) -> LocalPostgres:
        self.init()
        if not self.is_running():
            subprocess.run(
                [*_as_owner(), _bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                 "-w", "-t", "60", "start"],
                check=True, capture_output=True, cwd="/",
            )
        self._wait_ready()
        self._ensure_role_and_db()
        return self

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            subprocess.run(
                [*_as_owner(), _bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"],
                check=False, capture_output=True, cwd="/",
            )

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop("immediate")
        if self._owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def is_running(self) -> bool:
        if not (self.data_dir / "postmaster.pid").exists():
            return False
        r = subprocess.run(
            [*_as_owner(), _bin("pg_ctl"), "-D", str(self.data_dir), "status"],
            capture_output=True, cwd="/",
        )
        return r.returncode == 0

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = subprocess.run(
                [_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
            )
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL on 127.0.0.1:{self.port} did not become ready")

    # admin over the Unix socket as superuser ---------------------------------------------
    def psql_admin(self, sql: str, dbname: str = "postgres") -> str:
        r = subprocess.run(
            [*_as_owner(), _bin("psql"), "-h", str(self.socket_dir), "-p", str(self.port),
             "-U", "postgres", "-d", dbname, "-v", "ON_ERROR_STOP=1", "-qAt", "-f", "-"],
            input=sql, capture_output=True, text=True, cwd="/",
        )
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr.strip().replace(self.app_password, '***')}")
        return r.stdout.strip()

    def _ensure_role_and_db(self) -> None:
        # SQL goes to psql on stdin, so the password is never on a command line. Names are ours
        # and checked to be plain identifiers.
        for name in (self.app_user, self.dbname):
            if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
                raise ValueError(f"not a plain identifier: {name!r}")
        pw = self.app_password.replace("'", "''")
        exists = self.psql_admin(f"SELECT 1 FROM pg_roles WHERE rolname = '{self.app_user}'")  # noqa: S608
        verb = "ALTER" if exists else "CREATE"
        # Even a failing statement must not put the password into the server log.
        self.psql_admin("SET log_min_error_statement = panic; SET log_statement = 'none';\n"
                        f"{verb} ROLE {self.app_user} LOGIN PASSWORD '{pw}'")
        query = f"SELECT 1 FROM pg_database WHERE datname = '{self.dbname}'"  # noqa: S608
        if not self.psql_admin(query):
            self.psql_admin(f"CREATE DATABASE {self.dbname} OWNER {self.app_user}")

    # what clients need -------------------------------------------------------------------
    def secret_dict(self, host: str = "127.0.0.1") -> dict:
        """The Secrets Manager JSON shape the service reads (host, port, username, ...)."""
        return {
            "host": host,
            "port": self.port,
            "username": self.app_user,
            "password": self.app_password,
            "dbname": self.dbname,
        }

    def connect_kwargs(self, **overrides) -> dict:
        kw = {
            "host": "127.0.0.1",
            "port": self.port,
            "user": self.app_user,
            "password": self.app_password,
            "dbname": self.dbname,
            "sslmode": "require",
            "connect_timeout": 5,
        }
        kw.update(overrides)
        return kw
