"""`papyrus-ops monitoring`: plan (default) or apply the alarms, failed-task rule, health check."""

from __future__ import annotations

import json

import typer

from papyrus_ops.runner import EnvOpt, fail, prepare, run_flow


def register(app) -> None:

    @app.command("monitoring")
    def monitoring_cmd(env: str = EnvOpt,
                       apply: bool = typer.Option(False, "--apply", help="Make the changes."),
                       as_json: bool = typer.Option(False, "--json")) -> None:
        """Plan, then (with --apply) converge the monitoring resources; evidence for both."""
        prepare(env)
        from flows.monitoring import monitoring

        result = run_flow(monitoring, env=env, apply=apply)
        if as_json:
            typer.echo(json.dumps(result, indent=2, default=str))
        if result.get("verdict") == "bad_input":
            fail(result.get("error", "bad input"))
        raise typer.Exit(int(result.get("exit_code", 0 if result.get("verdict") == "success"
                                        else 1)))
