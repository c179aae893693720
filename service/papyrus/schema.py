"""The schema file and `flask init-db`, flaskr-style.

`papyrus/sql/init.sql` ships inside the package, so an image built from service/ alone carries
it; it is the one schema file (what ops review, and what the schema_init flow reads). It is
split into statements by `papyrus.sqlsplit`, the same splitter the schema_init flow uses.
"""

from __future__ import annotations

from importlib import resources

import click
from flask.cli import with_appcontext

from .db import get_engine
from .sqlsplit import split_sql


def init_sql() -> str:
    return resources.files("papyrus").joinpath("sql/init.sql").read_text(encoding="utf-8")


def split_statements(sql: str) -> list[str]:
    """The texts of `sql`'s statements (`sqlsplit.split_sql`), without their ";"."""
    return [st.text for st in split_sql(sql)]


def apply_schema(commit: bool = True) -> list[str]:
    """Run init.sql in one transaction; return each statement's command tag."""
    conn = get_engine().raw_connection()
    try:
        cur = conn.cursor()
        tags = []
        for statement in split_statements(init_sql()):
            cur.execute(statement)
            tags.append(cur.statusmessage)
        if commit:
            conn.commit()
        else:
            conn.rollback()
        return tags
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()


@click.command("init-db")
@with_appcontext
@click.option("--dry-run", is_flag=True, help="Run inside BEGIN ... ROLLBACK: change nothing.")
def init_db_command(dry_run: bool) -> None:
    """Create the tables from init.sql (idempotent)."""
    tags = apply_schema(commit=not dry_run)
    for tag in tags:
        click.echo(tag)
    verdict = "rolled back (dry run)" if dry_run else "committed"
    click.echo(f"init.sql: {len(tags)} statements {verdict}")
