"""`papyrus-ops`: the flows for people and CI. The exit code is the verdict.

0 success; 1 the flow ran and its verdict is failure; 2 bad input (one line on stderr, nothing
changed) — `ground.result`'s contract, applied by `papyrus_ops.runner` for every command.
"""

from __future__ import annotations

import json
import os

import typer

from papyrus_ops import quick_exit  # first: its exit handler must run after every other one

# Without PREFECT_API_URL each CLI call runs its flow on Prefect's temporary server, which must
# answer within `server.ephemeral.startup_timeout_seconds` (20 s by default): on a CI machine
# with both cores busy and a fresh PREFECT_HOME (migrations) that was missed once in this suite
# (tests/reliability/test_deploy_lease.py, under stress-ng). A slow start is not a failed deploy.
ENV_DEFAULTS = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}


def apply_env_defaults() -> None:
    """Before Prefect reads its settings: at import, and in each call of the warm interpreter
    (papyrus_ops.warm), whose environment is the call's."""
    for name, value in ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)


apply_env_defaults()

from papyrus_ops.commands import register_all  # noqa: E402 - after the defaults
from papyrus_ops.runner import fail  # noqa: E402

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
sandbox_app = typer.Typer(no_args_is_help=True, help="The embedded default (moto + PostgreSQL).")
evidence_app = typer.Typer(no_args_is_help=True, help="Evidence bundles.")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(evidence_app, name="evidence")

# -- sandbox -------------------------------------------------------------------------------
@sandbox_app.command("up")
def sandbox_up() -> None:
    """Start the sandbox in the background; writes .sandbox/env."""
    from sandbox import daemon

    try:
        info = daemon.up()
    except RuntimeError as e:
        fail(str(e), 1)
    typer.echo(f"sandbox up: AWS_ENDPOINT_URL={info['endpoint']} (pid {info['pid']})")
    typer.echo(f"env file: {daemon.DEFAULT_STATE / 'env'}")


@sandbox_app.command("down")
def sandbox_down() -> None:
    """Stop the sandbox and every process it started."""
    from sandbox import daemon

    pids = daemon.down()
    typer.echo(f"sandbox down ({len(pids)} processes stopped)" if pids else "sandbox not running")


@sandbox_app.command("status")
def sandbox_status() -> None:
    from sandbox import daemon

    info = daemon.read_state()
    if not info or not info["running"]:
        typer.echo("sandbox not running")
        raise typer.Exit(1)
    typer.echo(json.dumps(info, indent=2))


register_all(app, evidence_app)


def main() -> None:  # pragma: no cover - console entry
    try:
        code = app()
    except SystemExit as e:
        code = e.code
    quick_exit.exit_with(code)


if __name__ == "__main__":  # pragma: no cover
    # Run the canonical module's app: command modules register on `papyrus_ops.cli`, and under
    # `python -m` this file is also loaded a second time as `__main__`.
    from papyrus_ops.cli import main as canonical_main

    canonical_main()


