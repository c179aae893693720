"""`papyrus-ops deploy`: the exit code is the verdict (0 worked, 1 did not, 2 bad input)."""

from __future__ import annotations

import json
import math

import typer

from papyrus_ops.runner import EnvOpt, fail, prepare


def run_flow_state(flow_fn, **params) -> dict:
    """Run a flow in this process; return its summary dict whether it Completed or Failed.

    The flow-run heartbeat is off here: it exists so that a server can tell when the process
    running a flow died, but this process is the one waiting for the answer, and Prefect
    joins the heartbeat thread (1 s sleeps) at the end of every run — up to a second per
    flow (docs/benchmarks.md §4). Runs started by a worker keep Prefect's default."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        state = flow_fn(**params, return_state=True)
    try:
        result = state.result(raise_on_failure=False)
    except Exception as e:  # noqa: BLE001 - a crashed flow still gets a one-line verdict
        result = {"verdict": "failed", "error": f"{type(e).__name__}: {e}"}
    if not isinstance(result, dict):
        result = {"verdict": "failed", "error": state.message or str(result)}
    return result


def _seconds(option: str, text: str | None, low: float, high: float) -> float | None:
    """A finite number of seconds within [low, high]; anything else is one-line bad input."""

    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or not low <= value <= high:
        fail(f"{option} must be a number of seconds from {low:g} to {high:g}, got {text!r}")
    return value


def register(app) -> None:

    @app.command("deploy")
    def deploy_cmd(
        image: str = typer.Option(..., "--image", "-i",
                                  help="tag, repo:tag, repo@sha256:…, or full ECR URI"),
        env: str = EnvOpt,
        plan: bool = typer.Option(False, "--plan", help="Show the plan and diff; change nothing."),
        timeout: str = typer.Option(None, "--timeout", help="Seconds to wait for a verdict."),
        poll: str = typer.Option(None, "--poll", help="Seconds between polls."),
        no_rollback: bool = typer.Option(False, "--no-rollback"),
        skip_preflight: bool = typer.Option(False, "--skip-preflight"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Deploy an image to the environment's ECS service and judge the result."""
        settings = prepare(env)
        timeout_s = _seconds("--timeout", timeout, 1, 24 * 3600)
        poll_s = _seconds("--poll", poll, 0.1, 600)
        from tasks.image_ref import parse_image_ref

        try:
            parse_image_ref(image, settings.ecr_repository)
        except ValueError as e:
            fail(str(e))
        from flows.deploy import deploy

        result = run_flow_state(deploy, env=env, image=image, plan=plan, timeout_seconds=timeout_s,
                                poll_seconds=poll_s, rollback=not no_rollback,
                                skip_preflight=skip_preflight)
        if as_json:
            typer.echo(json.dumps(result, indent=2, default=str))
        verdict = result.get("verdict")
        if verdict == "bad_input":
            fail(result.get("error", "bad input"))
        from ground.redact import REDACTOR

        line = " ".join(str(result.get("reason") or result.get("error") or verdict).split())
        typer.echo(REDACTOR.redact(f"deploy {verdict}: {line}"), err=verdict != "success")
        raise typer.Exit(0 if verdict == "success" else 1)
