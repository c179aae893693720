"""`papyrus-ops preflight` and `papyrus-ops repair secret|sg|exec`.

Exit codes (papyrus_ops.runner): 0 all checks pass / the repair worked (or its plan was made),
1 a check failed / the repair did not work, 2 bad input (one line on stderr, nothing changed).
`--json` prints only the result (ground.result's contract) on stdout (for CI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from papyrus_ops.runner import EnvOpt, JsonOpt, answer, fail, prepare, run_flow

REPAIR_CHOICES = ("secret", "sg", "exec")
_STYLE = {"pass": "green", "fail": "bold red", "skip": "yellow"}


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
    data = result.get("data") or {}
    for c in data.get("checks", []):
        v = c["verdict"]
        table.add_row(c["check"], REDACTOR.redact(_cell(c["expected"])),
                      REDACTOR.redact(_cell(c["actual"])),
                      f"[{_STYLE.get(v, 'red')}]{v}[/]")
    con.print(table)
    diff = data.get("connection_diff") or []
    if diff:
        t = Table(title="secret vs RDS (password masked)", title_justify="left")
        for col in ("field", "secret", "rds", "match"):
            t.add_column(col, overflow="fold")
        for r in diff:
            t.add_row(r["field"], REDACTOR.redact(_cell(r["stored"])),
                      REDACTOR.redact(_cell(r["rds"])),
                      "[green]yes[/]" if r["match"] else "[bold red]NO[/]")
        con.print(t)
    for c in data.get("checks", []):
        if c["verdict"] == "fail":
            con.print(f"[bold red]FAIL[/] {c['check']}: {REDACTOR.redact(c['detail'])}",
                      soft_wrap=True)
    _print_evidence(con, result)


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
    data = result.get("data") or {}
    mode = data.get("mode")
    con.print(f"repair {data.get('what')} — {result.get('env')} ({mode}): "
              f"{REDACTOR.redact(data.get('target', ''))}")
    actions = data.get("applied") if mode == "apply" else data.get("actions")
    if data.get("noop"):
        con.print("  nothing to repair")
    for a in actions or []:
        con.print(f"  {'applied' if mode == 'apply' else 'would'}: "
                  f"{REDACTOR.redact(a.get('summary', ''))}")
    if mode == "plan" and data.get("actions"):
        con.print("  plan only: nothing changed. Re-run with --apply to make these changes.")
    if data.get("note"):
        con.print(f"  note: {REDACTOR.redact(data['note'])}")
    if data.get("checks"):
        t = Table(title="after", title_justify="left")
        for col in ("check", "expected", "actual", "verdict"):
            t.add_column(col, overflow="fold")
        for c in data["checks"]:
            v = c["verdict"]
            t.add_row(c["check"], REDACTOR.redact(_cell(c["expected"])),
                      REDACTOR.redact(_cell(c["actual"])), f"[{_STYLE.get(v, 'red')}]{v}[/]")
        con.print(t)
    if result.get("error"):
        con.print(f"[bold red]error:[/] {REDACTOR.redact(result['error'])}")
    _print_evidence(con, result)


def register(app) -> None:

    @app.command("preflight")
    def preflight_cmd(
        env: str = EnvOpt,
        as_json: bool = JsonOpt,
        service_dir: Path = typer.Option(
            None, "--service-dir", help="Service source to check the URL map of (default: "
            "service/)."),
        no_db_auth: bool = typer.Option(
            False, "--no-db-auth", help="Do not check that the secret's password authenticates."),
    ) -> None:
        """Drift gate: secret vs RDS, endpoint, force_ssl, RDS SG, ECS Exec, routes, PGSSLMODE."""
        prepare(env, as_json, flow="preflight")
        if service_dir is not None and not (service_dir / "papyrus" / "__init__.py").is_file():
            fail(f"--service-dir {service_dir}: no papyrus package there", as_json=as_json,
                 flow="preflight", env=env)
        from flows.preflight import preflight  # deferred: imports Prefect

        res = run_flow(preflight, env=env,
                       service_dir=str(service_dir.resolve()) if service_dir else None,
                       check_db_auth=not no_db_auth)
        answer(res, as_json, human=print_preflight)

    @app.command("repair")
    def repair_cmd(
        what: str = typer.Argument(..., help="secret | sg | exec", show_default=False),
        env: str = EnvOpt,
        apply: bool = typer.Option(False, "--apply",
                                   help="Make the changes of a plan recorded before "
                                        "(default: plan, recorded)."),
        yes: bool = typer.Option(False, "--yes",
                                 help="With --apply: plan and apply in one go, where the "
                                      "environment requires no approval."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Guarded repair of one drift: plan first; changes only with --apply."""
        if what not in REPAIR_CHOICES:
            fail(f"unknown repair {what!r}: expected one of {', '.join(REPAIR_CHOICES)}",
                 as_json=as_json, flow="repair", env=env)
        settings = prepare(env, as_json, flow="repair")
        if yes and not apply:
            fail("--yes goes with --apply", as_json=as_json, flow="repair", env=env)
        if yes and settings.approval_required:
            fail(f"environment {env!r} requires approval between the plan and the apply: --yes "
                 "is not allowed here; run the plan first", as_json=as_json, flow="repair",
                 env=env)
        from flows.repair import repair  # deferred: imports Prefect

        # The CLI never pauses (it waits for its own run; nobody watches its server): --apply is
        # bound to a plan recorded earlier, or --yes where the environment allows it.
        res = run_flow(repair, env=env, what=what, apply=apply,
                       approval="yes" if yes else "recorded")
        answer(res, as_json, human=print_repair)
