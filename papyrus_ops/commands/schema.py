"""`papyrus-ops schema-init` and `papyrus-ops insert-check` (runbook 2025-10-21).

    papyrus-ops schema-init --env local                 # dry run only (BEGIN ... ROLLBACK)
    papyrus-ops schema-init --env local --apply         # dry run, then BEGIN ... COMMIT
    papyrus-ops schema-init --env local --sql my.sql    # another script file
    papyrus-ops insert-check --env local [--json]       # SKU-CLI row via psycopg2 over SSL

Exit 0 success, 1 the flow ran and its verdict is failed, 2 bad input (unknown environment,
missing/unusable SQL file, broken DB secret): one line on stderr and no flow run, nothing changed.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _emit(result: dict, as_json: bool, lines: list[str]) -> None:
    from ground.redact import REDACTOR
    from papyrus_ops.cli import fail

    if result.get("bad_input"):
        fail(result.get("error") or "bad input")
    ok = result.get("verdict") == "success"
    if as_json:
        typer.echo(REDACTOR.redact(json.dumps(result, indent=2, default=str)))
    else:
        for line in lines:
            typer.echo(REDACTOR.redact(line))
        if not ok:
            typer.echo(REDACTOR.redact(" ".join(str(result.get("error") or "failed").split())),
                       err=True)
    raise typer.Exit(0 if ok else 1)


def _evidence_line(result: dict) -> str:
    ev = result.get("evidence") or {}
    if not ev:
        return "evidence: none"
    where = ev.get("s3_uri") or ("upload pending: " + str(ev.get("pending_reason") or "?")
                                 if ev.get("upload_pending") else "local only")
    return f"evidence: {ev.get('folder')} ({where})"


def _check_secret(settings) -> None:
    """A broken DB secret is bad input: say so in one line before any flow run."""
    from ground.aws import client
    from papyrus_ops.cli import fail
    from tasks.db import DbSecretError, DbSecretUnavailable, read_db_secret

    try:
        read_db_secret.fn(client("secretsmanager", settings.region), settings.db_secret_id)
    except DbSecretError as e:
        fail(str(e))
    except DbSecretUnavailable:
        pass  # not bad input: the flow retries it and reports a failed verdict


def register(app) -> None:
    from papyrus_ops.cli import EnvOpt, fail, prepare

    @app.command("schema-init")
    def schema_init_cmd(
        env: str = EnvOpt,
        apply: bool = typer.Option(False, "--apply",
                                   help="After a passing dry run, apply (BEGIN ... COMMIT)."),
        sql: Path = typer.Option(None, "--sql",
                                 help="SQL file (default: service/papyrus/sql/init.sql)."),
        database: str = typer.Option(None, "--database",
                                     help="Another database on the same server (rehearsal)."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """init.sql as a dry run (BEGIN ... ROLLBACK); with --apply, then BEGIN ... COMMIT."""
        settings = prepare(env)
        from tasks.schema.script import ScriptError, load_script

        try:
            script = load_script(sql)
        except ScriptError as e:
            fail(str(e))
        _check_secret(settings)
        from flows.schema_init import run_for_result, schema_init

        result = run_for_result(schema_init, env=env, apply=apply,
                                sql_path=str(sql) if sql else None, database=database)
        dry, ap = result.get("dryrun") or {}, result.get("apply") or {}
        lines = [f"script: {script.name} ({len(script.statements)} statements, "
                 f"sha256 {script.sha256})"]
        if dry:
            lines.append(f"dry run: {dry.get('outcome')}"
                         + (f" ({', '.join(dry.get('tags') or [])}; rolled back)"
                            if dry.get("outcome") == "passed" else ""))
        if ap:
            lines.append(f"apply: {ap.get('outcome')}"
                         + (f" ({', '.join(ap.get('tags') or [])}; committed)"
                            if ap.get("outcome") == "applied" else "")
                         + (" (already applied: nothing executed)"
                            if ap.get("outcome") == "noop" else ""))
        lines += [_evidence_line(result), f"verdict: {result.get('verdict')}"]
        _emit(result, as_json, lines)

    @app.command("insert-check")
    def insert_check_cmd(
        env: str = EnvOpt,
        database: str = typer.Option(None, "--database",
                                     help="Another database on the same server."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Insert an SKU-CLI row with psycopg2 over SSL; evidence *_papyrus_psql_insert_cli.log."""
        settings = prepare(env)
        _check_secret(settings)
        from flows.insert_check import insert_check
        from flows.schema_init import run_for_result

        result = run_for_result(insert_check, env=env, database=database)
        lines = [f"{result.get('sku')}: {result.get('tag') or '-'}, ssl="
                 f"{str(bool(result.get('ssl'))).lower()} {result.get('ssl_version') or ''}",
                 _evidence_line(result), f"verdict: {result.get('verdict')}"]
        _emit(result, as_json, lines)
