"""`papyrus-ops demo`: the README's main job — the whole runbook, end to end, on the sandbox.

sandbox up → preflight → schema init (dry run, then apply) → deploy the current `service/`
image → show `/`, `/healthz`, `/dbcheck` → monitoring (plan, apply) → CloudTrail archive →
sandbox down. One process and one Prefect API for every flow, so it stays quick when warm.
"""

from __future__ import annotations

import os
import time

import typer

from papyrus_ops.runner import prepare, run_flow

SANDBOX_LOOKUP_RPS = 20.0


def _step(rows: list, name: str, fn, **params) -> dict:
    t0 = time.monotonic()
    result = run_flow(fn, **params)
    seconds = time.monotonic() - t0
    verdict = result.get("verdict", "?")
    detail = result.get("reason") or ""
    rows.append((name, verdict, f"{seconds:.1f}s", str(detail)[:90]))
    typer.echo(f"[{verdict:>7}] {name} ({seconds:.1f}s) {detail}")
    return result


def _show_routes(settings, result: dict) -> list[str]:
    """The three answers, from the task the deploy left running (token never printed)."""
    import httpx

    from ground import aws
    from tasks.probes import probe_targets, read_probe_token

    base = probe_targets(aws.client("ecs", settings.region), settings,
                         result["data"]["task_definition"])[0]
    token = read_probe_token.fn(aws.client("secretsmanager", settings.region), settings)
    lines = []
    for path, headers in (("/", {}), ("/healthz", {}),
                          ("/dbcheck", {"Authorization": f"Bearer {token}"})):
        r = httpx.get(base + path, headers=headers, timeout=10)
        lines.append(f"GET {path} -> {r.status_code} {r.text.strip()[:300]}")
    return lines


def _start_prefect_api_early(state_dir):
    """Without PREFECT_API_URL the first flow run would start Prefect's temporary server (a
    subprocess, its imports and migrations: 10 s and more here). Spawn one now, before this
    process imports Prefect, so it comes up while the sandbox does; neither needs the other.
    With PREFECT_API_URL set (e.g. `papyrus-ops prefect up`), that API is used."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    from papyrus_ops.prefect_local import TemporaryServer

    return TemporaryServer(state_dir / "demo-prefect-server.log")


def main_job_steps(archive_step: str, archive_params: dict) -> list[tuple[str, object, dict]]:
    """The README's main job, in order: (step name, flow, parameters). The archive's name and
    parameters are the caller's: AWS allows 2 LookupEvents/s and the nightly run keeps to it;
    the sandbox's stand-in has no such limit, so the demo does not wait for one (same code)."""
    from flows.cloudtrail_archive import cloudtrail_archive
    from flows.deploy import deploy
    from flows.monitoring import monitoring
    from flows.preflight import preflight
    from flows.schema_init import schema_init

    return [
        ("preflight", preflight, {}),
        ("schema-init (dry run)", schema_init, {}),
        # Bound to the dry run just above: its record in the evidence bucket (tasks/approval.py).
        ("schema-init --apply", schema_init, {"apply": True, "approval": "recorded"}),
        ("deploy --image latest", deploy, {"image": "latest"}),
        ("monitoring (plan)", monitoring, {}),
        ("monitoring --apply", monitoring, {"apply": True}),
        (archive_step, cloudtrail_archive, archive_params),
    ]


def register(app) -> None:
    @app.command("demo")
    def demo(keep: bool = typer.Option(False, "--keep", help="Leave the sandbox running.")):
        """Run the whole pipeline on the sandbox (starts and stops it)."""
        from sandbox import daemon

        t0 = time.monotonic()
        prefect_api = _start_prefect_api_early(daemon.DEFAULT_STATE)
        rows: list = []
        ok = True
        try:
            info = daemon.up()
            typer.echo(f"sandbox up at {info['endpoint']} ({time.monotonic() - t0:.1f}s)")
            if prefect_api is not None:
                os.environ["PREFECT_API_URL"] = prefect_api.wait()
                typer.echo(f"prefect API at {prefect_api.api_url} "
                           f"({time.monotonic() - t0:.1f}s)")

            settings = prepare("local")
            steps = main_job_steps("cloudtrail-archive (90 days, 20 req/s)",
                                   {"max_rps": SANDBOX_LOOKUP_RPS})
            results = {}
            for name, fn, params in steps:
                results[name] = _step(rows, name, fn, env="local", **params)
                ok &= results[name].get("verdict") == "success"
            deployed = results["deploy --image latest"]
            if deployed.get("verdict") == "success":
                for line in _show_routes(settings, deployed):
                    typer.echo(line)
        finally:
            if not keep:
                daemon.down()
                typer.echo("sandbox down")
        typer.echo(f"\n{'step':40} {'verdict':8} {'time':>7}  detail")
        for name, verdict, seconds, detail in rows:
            typer.echo(f"{name:40} {verdict:8} {seconds:>7}  {detail}")
        typer.echo(f"demo {'succeeded' if ok else 'FAILED'} in {time.monotonic() - t0:.1f}s; "
                   f"evidence under {settings.evidence_root}")
        raise typer.Exit(0 if ok else 1)
