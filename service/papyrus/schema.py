"""The schema file and `flask init-db`, flaskr-style.

`service/sql/init.sql` is the canonical file (what ops review and the schema_init flow
reads); `papyrus/sql/init.sql` is the identical copy that ships inside the package, so an
image built from service/ alone still carries it. A test keeps the two byte-identical.
"""

from __future__ import annotations

import re
from importlib import resources

import click
from flask.cli import with_appcontext

from .db import get_engine

# Statements end with ";" at the end of a line. The schema_init flow splits the same way to
# run them one by one inside BEGIN ... ROLLBACK, then BEGIN ... COMMIT.
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)


def init_sql() -> str:
    return resources.files("papyrus").joinpath("sql/init.sql").read_text(encoding="utf-8")


def split_statements(sql: str) -> list[str]:
    """Statements of `sql` without their ";", skipping chunks that are only comments."""
    statements = []
    for chunk in _STATEMENT_END.split(sql):
        code = [ln for ln in chunk.splitlines() if ln.strip() and not ln.strip().startswith("--")]
        if code:
            statements.append(chunk.strip())
    return statements


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
