"""`papyrus-ops monitoring`: plan (default) or apply the alarms, failed-task rule, health check.

Exit 0 success, 1 failed (blocked items, a missing VPC/ALB, no convergence), 2 bad input. `--json`
prints `ground.result`'s dict; plan counts, items, notes and problems are under `data`.
"""

from __future__ import annotations

import contextlib
import sys

import typer

from papyrus_ops.runner import EnvOpt, JsonOpt, answer, evidence_line, prepare, run_flow


def _human(res: dict) -> None:
    for problem in (res.get("data") or {}).get("problems") or []:
        typer.echo(f"problem: {problem}")
    typer.echo(evidence_line(res))


def register(app) -> None:

    @app.command("monitoring")
    def monitoring_cmd(env: str = EnvOpt,
                       apply: bool = typer.Option(False, "--apply", help="Make the changes."),
                       as_json: bool = JsonOpt) -> None:
        """Plan, then (with --apply) converge the monitoring resources; evidence for both."""
        prepare(env, as_json, "monitoring")
        from flows.monitoring import monitoring

        # The flow prints its plan tables (log_prints); with --json stdout carries the result
        # and nothing else, so the tables go to stderr.
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            res = run_flow(monitoring, env=env, apply=apply)
        answer(res, as_json, human=_human)
