"""A new local Prefect server's SQLite database, copied from a migrated one instead of migrated.

`prefect server start` on a database file that is not there yet runs Prefect's whole chain of
alembic migrations before it answers: about 6 of its 9 s of CPU on this kind of machine, 3.4 s
on a migrated copy (docs/benchmarks.md §8). The template is built once for the installed
Prefect (`prefect server database upgrade`, its own command, in a folder of its own) by a
caller that asks for it — the test suite's servers — under a lock, so servers starting at once
build it once and the others wait for it; every later new database is a copy, the CLI's
servers' too. The server still runs its own start-up check (a no-op
at the head revision) and registers its block types, so a template from another Prefect
version is never used (the file name carries the version and its migrations) and a stale one
could only cost the migrations it skips.

An existing database is never touched: seeding is for a file that is not there yet. Any
failure (no writable cache, the upgrade failing) leaves the server to migrate as it always
did: seeding only ever saves time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

from papyrus_ops.prefect_local.processes import _prefect_exe, base_env

# Where the templates live: the user's cache (XDG), like uv's and pip's; PAPYRUS_CACHE_DIR wins.
CACHE_VARIABLE = "PAPYRUS_CACHE_DIR"
BUILD_TIMEOUT = 300


def cache_dir() -> Path:
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "papyrus-ops"


def _migrations_key() -> str:
    """The installed Prefect's version and its SQLite migrations: what the template holds.
    Found without importing Prefect (a CLI call's parent process does not)."""
    import importlib.metadata
    import importlib.util

    spec = importlib.util.find_spec("prefect")
    versions = Path(spec.origin).parent / "server" / "database" / "_migrations" / "versions" \
        / "sqlite"
    names = sorted(p.name for p in versions.glob("*.py"))
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
    return f"{importlib.metadata.version('prefect')}-{digest}"


def template_path() -> Path:
    return cache_dir() / "prefect-sqlite" / f"prefect-{_migrations_key()}.db"


def _build(template: Path) -> None:
    """Migrate an empty database with Prefect's own command, then move it into place whole."""
    with tempfile.TemporaryDirectory(prefix="prefect-template-", dir=template.parent) as tmp:
        db = Path(tmp) / "prefect.db"
        subprocess.run(
            [_prefect_exe(), "server", "database", "upgrade", "-y"],
            env=base_env(PREFECT_HOME=tmp,
                         PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{db}",
                         PREFECT_SERVER_LOGGING_LEVEL="WARNING"),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=BUILD_TIMEOUT, check=True)
        # One self-contained file: whatever is still in the write-ahead log goes into it.
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("PRAGMA journal_mode=DELETE")
            if not conn.execute("SELECT version_num FROM alembic_version").fetchone():
                raise RuntimeError("the upgrade left no alembic version")
        os.replace(db, template)


def seed(db_file: Path, build: bool = False) -> bool:
    """Put a migrated database at `db_file` if none is there. True when it was seeded. Without
    `build`, only from a template that exists: a first server's start stays what Prefect
    makes it (its own migrations, ~9 s) rather than the template's build (~8 s) and then a
    start. The test suite builds it (tests/conftest.py), once per machine and Prefect."""
    db_file = Path(db_file)
    if db_file.exists():
        return False
    try:
        template = template_path()
        if not build and not template.exists():
            return False
        template.parent.mkdir(parents=True, exist_ok=True)
        if not template.exists():
            with open(template.parent / ".lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not template.exists():  # built by whoever held the lock before us
                    _build(template)
        db_file.parent.mkdir(parents=True, exist_ok=True)
        partial = db_file.with_name(f".{db_file.name}.{os.getpid()}.partial")
        shutil.copyfile(template, partial)
        try:
            os.link(partial, db_file)  # never over a database a server made meanwhile
        except FileExistsError:
            return False
        finally:
            partial.unlink()
        return True
    except (OSError, subprocess.SubprocessError, sqlite3.Error, RuntimeError):
        return False
