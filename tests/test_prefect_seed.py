"""`papyrus_ops.prefect_local.seed`: a new local Prefect server's SQLite database is a copy of one
Prefect's own `database upgrade` migrated, built once per Prefect version even when servers start
at once; an existing database is never replaced; any failure leaves the server to migrate."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
from pathlib import Path

import prefect

from papyrus_ops.prefect_local import seed

MIGRATIONS = Path(prefect.__file__).parent / "server" / "database" / "_migrations" / "versions" \
    / "sqlite"


def head_revision() -> str:
    """The one SQLite revision no other migration names as its down revision."""
    revs, downs = set(), set()
    for f in MIGRATIONS.glob("*.py"):
        text = f.read_text()
        revs.add(re.search(r'^revision = "(\w+)"', text, re.M).group(1))
        down = re.search(r'^down_revision = "(\w+)"', text, re.M)
        if down:
            downs.add(down.group(1))
    (head,) = revs - downs
    return head


def tables(db: Path) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))


def alembic_version(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def test_a_seeded_database_is_at_the_installed_prefects_head_and_later_ones_are_copies(
        tmp_path, monkeypatch):
    monkeypatch.setenv(seed.CACHE_VARIABLE, str(tmp_path / "cache"))
    first = tmp_path / "a" / "prefect.db"
    assert not seed.seed(first)  # a CLI's server: no template, no build, Prefect migrates
    assert not first.exists() and not seed.template_path().exists()
    assert seed.seed(first, build=True)
    assert alembic_version(first) == head_revision()
    assert {"flow_run", "task_run", "deployment", "events", "automation"} <= set(tables(first))
    assert seed.template_path().parent == tmp_path / "cache" / "prefect-sqlite"
    assert prefect.__version__ in seed.template_path().name

    built = []
    monkeypatch.setattr(seed, "_build", built.append)
    second = tmp_path / "b" / "prefect.db"
    assert seed.seed(second)
    assert built == []  # the template was there: a copy, no second migration
    assert tables(second) == tables(first)
    assert not list(second.parent.glob(".*partial"))


def test_an_existing_database_is_never_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv(seed.CACHE_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.setattr(seed, "_build", lambda t: t.write_bytes(b"template"))
    db = tmp_path / "prefect.db"
    db.write_bytes(b"a server's own history")
    assert not seed.seed(db, build=True)
    assert db.read_bytes() == b"a server's own history"


def test_servers_starting_at_once_build_the_template_once(tmp_path, monkeypatch):
    monkeypatch.setenv(seed.CACHE_VARIABLE, str(tmp_path / "cache"))
    builds = []

    def slow_build(template: Path) -> None:
        builds.append(template)
        time.sleep(0.5)  # long enough for every other caller to reach the lock
        template.write_bytes(b"migrated")

    monkeypatch.setattr(seed, "_build", slow_build)
    results = {}
    callers = [threading.Thread(target=lambda i=i: results.update(
        {i: seed.seed(tmp_path / f"s{i}" / "prefect.db", build=True)})) for i in range(4)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    assert len(builds) == 1
    assert results == {0: True, 1: True, 2: True, 3: True}
    assert all((tmp_path / f"s{i}" / "prefect.db").read_bytes() == b"migrated" for i in range(4))


def test_without_a_usable_cache_the_server_migrates_as_before(tmp_path, monkeypatch):
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("")
    monkeypatch.setenv(seed.CACHE_VARIABLE, str(not_a_folder))
    db = tmp_path / "prefect.db"
    assert not seed.seed(db, build=True)
    assert not db.exists()


def test_a_failed_upgrade_leaves_no_template(tmp_path, monkeypatch):
    monkeypatch.setenv(seed.CACHE_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.setattr(seed, "_prefect_exe", lambda: "false")  # the upgrade exits 1
    assert not seed.seed(tmp_path / "prefect.db", build=True)
    assert not (tmp_path / "prefect.db").exists()
    assert not seed.template_path().exists()
    assert not list(seed.template_path().parent.glob("prefect-template-*"))


def test_the_session_server_runs_on_a_seeded_database(prefect_server):
    from prefect import flow
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    url = PREFECT_SERVER_DATABASE_CONNECTION_URL.value()
    assert "/prefect-harness-" in url and url.endswith("/prefect-test.db")

    @flow
    def answers() -> int:
        return 42

    assert answers() == 42
