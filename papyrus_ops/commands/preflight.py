"""`papyrus-ops preflight` and `papyrus-ops repair secret|sg|exec`.

Exit codes: 0 all checks pass / the repair worked (or its plan was made), 1 a check failed /
the repair did not work, 2 bad input (one line on stderr, nothing changed).
`--json` prints only the machine-readable result on stdout (for CI).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from papyrus_ops.runner import EnvOpt, fail, prepare

REPAIR_CHOICES = ("secret", "sg", "exec")
_STYLE = {"pass": "green", "fail": "bold red", "skip": "yellow"}


def run_flow(flow_fn, **params) -> dict[str, Any]:
    """Run a flow; its result dict whatever its final state (a crash becomes 'failed')."""
    from ground.redact import REDACTOR

    try:
        state = flow_fn(**params, return_state=True)
        result = state.result(raise_on_failure=False)
    except Exception as e:  # noqa: BLE001 - one line, never a traceback with values in it
        result = {"verdict": "failed", "error": REDACTOR.redact(f"{type(e).__name__}: {e}")}
    if not isinstance(result, dict):
        result = {"verdict": "failed", "error": REDACTOR.redact(str(result))}
    return result


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def _console():
    import sys

    from rich.console import Console

    # CI logs are not terminals: give tables room instead of rich's 80-column default.
    width = None if sys.stdout.isatty() else 160
    return Console(highlight=False, width=width)


def print_preflight(result: dict[str, Any]) -> None:
    from rich.table import Table

    from ground.redact import REDACTOR

    con = _console()
    table = Table(title=f"preflight — {result.get('env')}", title_justify="left")
    for col in ("check", "expected", "actual", "verdict"):
        table.add_column(col, overflow="fold")
    for c in result.get("checks", []):
        v = c["verdict"]
        table.add_row(c["check"], REDACTOR.redact(_cell(c["expected"])),
                      REDACTOR.redact(_cell(c["actual"])),
                      f"[{_STYLE.get(v, 'red')}]{v}[/]")
    con.print(table)
    diff = result.get("connection_diff") or []
    if diff:
        t = Table(title="secret vs RDS (password masked)", title_justify="left")
        for col in ("field", "secret", "rds", "match"):
            t.add_column(col, overflow="fold")
        for r in diff:
            t.add_row(r["field"], REDACTOR.redact(_cell(r["stored"])),
                      REDACTOR.redact(_cell(r["rds"])),
                      "[green]yes[/]" if r["match"] else "[bold red]NO[/]")
        con.print(t)
    for c in result.get("checks", []):
        if c["verdict"] == "fail":
            con.print(f"[bold red]FAIL[/] {c['check']}: {REDACTOR.redact(c['detail'])}",
                      soft_wrap=True)
    _print_evidence(con, result)
    verdict = result.get("verdict")
    con.print(f"preflight {result.get('env')}: "
              + ("[green]success[/]" if verdict == "success" else f"[bold red]{verdict}[/]"))


def _print_evidence(con, result: dict[str, Any]) -> None:
    ev = result.get("evidence") or {}
    if ev:
        where = ev.get("s3_uri") or ev.get("folder")
        pending = " (S3 upload pending)" if ev.get("upload_pending") else ""
        con.print(f"evidence: {where}{pending}", soft_wrap=True)
        con.print(f"local: {ev.get('folder')}", soft_wrap=True)


def print_repair(result: dict[str, Any]) -> None:
    from rich.table import Table

    from ground.redact import REDACTOR

    con = _console()
    mode = result.get("mode")
    con.print(f"repair {result.get('what')} — {result.get('env')} ({mode}): "
              f"{REDACTOR.redact(result.get('target', ''))}")
    actions = result.get("applied") if mode == "apply" else result.get("actions")
    if result.get("noop"):
        con.print("  nothing to repair")
    for a in actions or []:
        con.print(f"  {'applied' if mode == 'apply' else 'would'}: "
                  f"{REDACTOR.redact(a.get('summary', ''))}")
    if mode == "plan" and result.get("actions"):
        con.print("  plan only: nothing changed. Re-run with --apply to make these changes.")
    if result.get("note"):
        con.print(f"  note: {REDACTOR.redact(result['note'])}")
    if result.get("checks"):
        t = Table(title="after", title_justify="left")
        for col in ("check", "expected", "actual", "verdict"):
            t.add_column(col, overflow="fold")
        for c in result["checks"]:
            v = c["verdict"]
            t.add_row(c["check"], REDACTOR.redact(_cell(c["expected"])),
                      REDACTOR.redact(_cell(c["actual"])), f"[{_STYLE.get(v, 'red')}]{v}[/]")
        con.print(t)
    if result.get("error"):
        con.print(f"[bold red]error:[/] {REDACTOR.redact(result['error'])}")
    _print_evidence(con, result)
    verdict = result.get("verdict")
    con.print(f"repair {result.get('what')}: "
              + ("[green]success[/]" if verdict == "success" else f"[bold red]{verdict}[/]"))


def _emit_json(result: dict[str, Any]) -> None:
    from ground.redact import REDACTOR

    typer.echo(json.dumps(REDACTOR.redact_obj(result), indent=2, default=str))


def register(app) -> None:

    @app.command("preflight")
    def preflight_cmd(
        env: str = EnvOpt,
        as_json: bool = typer.Option(False, "--json", help="Machine-readable result (CI)."),
        service_dir: Path = typer.Option(
            None, "--service-dir", help="Service source to check the URL map of (default: "
            "service/)."),
        no_db_auth: bool = typer.Option(
            False, "--no-db-auth", help="Do not check that the secret's password authenticates."),
    ) -> None:
        """Drift gate: secret vs RDS, endpoint, force_ssl, RDS SG, ECS Exec, routes, PGSSLMODE."""
        prepare(env)
        if service_dir is not None and not (service_dir / "papyrus" / "__init__.py").is_file():
            fail(f"--service-dir {service_dir}: no papyrus package there")
        from flows.preflight import preflight

        result = run_flow(preflight, env=env,
                          service_dir=str(service_dir.resolve()) if service_dir else None,
                          check_db_auth=not no_db_auth)
        if result.get("verdict") == "bad_input":
            fail(result.get("error", "bad input"))
        if as_json:
            _emit_json(result)
        else:
            print_preflight(result)
        raise typer.Exit(0 if result.get("verdict") == "success" else 1)

    @app.command("repair")
    def repair_cmd(
        what: str = typer.Argument(..., help="secret | sg | exec", show_default=False),
        env: str = EnvOpt,
        apply: bool = typer.Option(False, "--apply", help="Make the changes (default: plan)."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable result (CI)."),
    ) -> None:
        """Guarded repair of one drift: plan first; changes only with --apply."""
        if what not in REPAIR_CHOICES:
            fail(f"unknown repair {what!r}: expected one of {', '.join(REPAIR_CHOICES)}")
        prepare(env)
        from flows.repair import repair

        result = run_flow(repair, env=env, what=what, apply=apply)
        if result.get("verdict") == "bad_input":
            fail(result.get("error", "bad input"))
        if as_json:
            _emit_json(result)
        else:
            print_repair(result)
        raise typer.Exit(0 if result.get("verdict") == "success" else 1)
