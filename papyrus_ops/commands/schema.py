"""`papyrus-ops schema-init` and `papyrus-ops insert-check` (runbook 2025-10-21).

    papyrus-ops schema-init --env local                 # dry run only (BEGIN ... ROLLBACK),
                                                        # recorded in the evidence bucket
    papyrus-ops schema-init --env local --apply         # only after a recorded passed dry run
                                                        # of this checksum: BEGIN ... COMMIT
    papyrus-ops schema-init --env local --apply --yes   # both stages at once (not where the
                                                        # environment requires approval)
    papyrus-ops schema-init --env local --sql my.sql    # another script file
    papyrus-ops insert-check --env local [--json]       # SKU-CLI row via psycopg2 over SSL

Exit 0 success, 1 the flow ran and its verdict is failed, 2 bad input (unknown environment,
missing/unusable SQL file, broken DB secret, `--apply` without a recorded passed dry run of
the script's checksum, `--yes` where the environment requires approval): one line on stderr
and no flow run, nothing changed.
`--json` prints `ground.result`'s dict (bad input too); the flow's own fields are under `data`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from papyrus_ops.runner import EnvOpt, JsonOpt, answer, evidence_line, fail, prepare, run_flow


def _check_secret(settings, as_json: bool, flow: str) -> None:
    """A broken DB secret is bad input: say so in one line before any flow run."""
    from ground.aws import client
    from tasks.db import DbSecretError, DbSecretUnavailable, read_db_secret

    try:
        read_db_secret.fn(client("secretsmanager", settings.region), settings.db_secret_id)
    except DbSecretError as e:
        fail(str(e), as_json=as_json, flow=flow, env=settings.env)
    except DbSecretUnavailable:
        pass  # not bad input: the flow retries it and reports a failed verdict


def register(app) -> None:

    @app.command("schema-init")
    def schema_init_cmd(
        env: str = EnvOpt,
        apply: bool = typer.Option(False, "--apply",
                                   help="Apply (BEGIN ... COMMIT) a script whose dry run passed "
                                        "and was recorded before (or with --yes)."),
        yes: bool = typer.Option(False, "--yes",
                                 help="With --apply: dry run and apply in one go, where the "
                                      "environment requires no approval."),
        sql: Path = typer.Option(None, "--sql",
                                 help="SQL file (default: service/papyrus/sql/init.sql)."),
        database: str = typer.Option(None, "--database",
                                     help="Another database on the same server (rehearsal)."),
        as_json: bool = JsonOpt,
    ) -> None:
        """init.sql as a dry run (BEGIN ... ROLLBACK); with --apply, then BEGIN ... COMMIT."""
        flow = "schema_init"
        settings = prepare(env, as_json, flow)
        from tasks.schema.script import ScriptError, load_script

        try:
            script = load_script(sql)
        except ScriptError as e:
            fail(str(e), as_json=as_json, flow=flow, env=env)
        _check_secret(settings, as_json, flow)
        # The CLI never pauses (it waits for its own run; nobody watches its server): --apply is
        # bound to a dry run recorded earlier, or --yes where the environment allows it.
        mode = "yes" if yes else "recorded"
        if yes and not apply:
            fail("--yes goes with --apply", as_json=as_json, flow=flow, env=env)
        if apply:
            from ground.aws import client
            from tasks.schema.gate import refusal_before_run

            try:
                refusal = refusal_before_run(settings, mode, script,
                                             client("s3", settings.region))
            except Exception as e:  # noqa: BLE001 - S3 unreachable/denied: a failure, not input
                fail(f"the dry-run record could not be read: {type(e).__name__}: {e}", 1,
                     as_json=as_json, flow=flow, env=env)
            if refusal:
                fail(refusal, as_json=as_json, flow=flow, env=env)
        from flows.schema_init import schema_init

        res = run_flow(schema_init, env=env, apply=apply, sql_path=str(sql) if sql else None,
                       database=database, approval=mode)

        def human(res: dict) -> None:
            data = res.get("data") or {}
            dry, ap = data.get("dryrun") or {}, data.get("apply") or {}
            # From the (redacted) result, as everything else printed here.
            typer.echo(f"script: {data.get('script', script.name)} "
                       f"({data.get('statements', len(script.statements))} statements, "
                       f"sha256 {data.get('checksum', script.sha256)})")
            if dry:
                typer.echo(f"dry run: {dry.get('outcome')}"
                           + (f" ({', '.join(dry.get('tags') or [])}; rolled back)"
                              if dry.get("outcome") == "passed" else ""))
            rec = data.get("record") or {}
            if rec.get("uri"):
                typer.echo(f"dry run {'recorded' if rec.get('new') else 'already recorded'}: "
                           f"{rec['uri']} (by {rec.get('who')}, {rec.get('when')}, flow run "
                           f"{rec.get('flow_run_id')})")
            if ap:
                typer.echo(f"apply: {ap.get('outcome')}"
                           + (f" ({', '.join(ap.get('tags') or [])}; committed)"
                              if ap.get("outcome") == "applied" else "")
                           + (" (already applied: nothing executed)"
                              if ap.get("outcome") == "noop" else ""))
            typer.echo(evidence_line(res))
            typer.echo(f"verdict: {res.get('verdict')}")

        answer(res, as_json, human=human)

    @app.command("insert-check")
    def insert_check_cmd(
        env: str = EnvOpt,
        database: str = typer.Option(None, "--database",
                                     help="Another database on the same server."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Insert an SKU-CLI row with psycopg2 over SSL; evidence *_papyrus_psql_insert_cli.log."""
        settings = prepare(env, as_json, "insert_check")
        _check_secret(settings, as_json, "insert_check")
        from flows.insert_check import insert_check

        def human(res: dict) -> None:
            data = res.get("data") or {}
            typer.echo(f"{data.get('sku')}: {data.get('tag') or '-'}, ssl="
                       f"{str(bool(data.get('ssl'))).lower()} {data.get('ssl_version') or ''}")
            typer.echo(evidence_line(res))
            typer.echo(f"verdict: {res.get('verdict')}")

        answer(run_flow(insert_check, env=env, database=database), as_json, human=human)
