"""`papyrus-ops prefect up|register|status|down`: a local Prefect for UI-triggered runs.

    papyrus-ops sandbox up                # the stand-in for AWS (writes .sandbox/env)
    papyrus-ops prefect up                # server on http://127.0.0.1:4200 + process worker
    papyrus-ops prefect register          # work pool if missing + `prefect deploy -n '*/*-local'`
    papyrus-ops prefect pool --env prd --image <registry>/papyrus-ops@sha256:… --api-url URL
                                          # the ECS pool from deployments/prd/ecs-pool.json
    papyrus-ops prefect register --env prd --api-url URL   # `prefect deploy -n '*/*-prd'`
                                          # + deployments/<env>/automations.toml
    papyrus-ops prefect alerts [--env prd] [--api-url URL] # the automations alone
    papyrus-ops prefect down              # stop everything `up` started, by pid
    papyrus-ops prefect cli-server [--stop]   # the server CLI calls share (started by the first)

State (pids, logs, Prefect homes) lives in `.prefect/` (or `$PAPYRUS_PREFECT_DIR`). Exit 0 on
success; 1 when a process would not start or registration failed; 2 bad input (one line).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ground.envfile import read_env_file
from papyrus_ops.runner import fail, prepare

prefect_app = typer.Typer(no_args_is_help=True,
                          help="A local Prefect server + `papyrus-local` worker (sandbox).")

StateOpt = typer.Option(None, "--state-dir",
                        help="Where pids, logs and Prefect homes go (default .prefect/).")


def _state(state_dir: Path | None) -> Path:
    from papyrus_ops import prefect_local

    return Path(state_dir) if state_dir else prefect_local.DEFAULT_STATE


@prefect_app.command("up")
def up_cmd(
    port: int = typer.Option(4200, "--port", min=0, max=65535,
                             help="Server port on 127.0.0.1 (0 = any free port)."),
    env_file: Path = typer.Option(
        None, "--env-file",
        help="Variables for the worker (default: the sandbox's env file, .sandbox/env)."),
    timeout: float = typer.Option(180, "--timeout", min=1,
                                  help="Seconds to wait for the server and the worker."),
    db: str = typer.Option("postgres", "--db",
                           help="The server's database: postgres (a local PostgreSQL 15 in the "
                                "state folder) or sqlite (Prefect's default; a UI submit can "
                                "fail with 'database is locked' while flows run)."),
    register: bool = typer.Option(False, "--register",
                                  help="Also register prefect.yaml's deployments (as "
                                       "`papyrus-ops prefect register`), while the worker "
                                       "starts."),
    ecs: bool = typer.Option(False, "--ecs",
                             help="Also the `papyrus-ecs-sandbox` ECS pool and the prefect-aws "
                                  "ECS worker (`prefect worker start --type ecs`): its flow "
                                  "runs are ECS tasks in the sandbox."),
    state_dir: Path = StateOpt,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Start a Prefect server on 127.0.0.1 and a process worker for `papyrus-local`."""
    from papyrus_ops import prefect_local
    from sandbox import daemon

    if db not in prefect_local.DATABASES:
        fail(f"--db {db!r}: expected one of {', '.join(prefect_local.DATABASES)}")
    path = env_file or (daemon.DEFAULT_STATE / "env")
    if not path.is_file():
        fail(f"no env file {path}: the worker needs the sandbox's variables; run "
             "`papyrus-ops sandbox up` first (or pass --env-file)")
    try:
        env = read_env_file(path)
    except OSError as e:
        fail(f"cannot read {path}: {e}")
    if "AWS_ENDPOINT_URL" not in env:
        fail(f"{path} has no AWS_ENDPOINT_URL: not a sandbox env file")
    try:
        info = prefect_local.up(_state(state_dir), port=port, sandbox_env=env, env_file=path,
                                timeout=timeout, db=db, ecs=ecs,
                                register_file=prefect_local.PREFECT_FILE if register else None)
    except prefect_local.PrefectLocalError as e:
        typer.echo(f"papyrus-ops: error: {e}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        if info.get("registered"):
            info["registered"].pop("output", None)
        typer.echo(json.dumps(info, indent=2))
        return
    again = " (already running)" if info.get("already_running") else ""
    if info.get("worker_restarted"):
        again += "; worker restarted for the new sandbox endpoint"
    typer.echo(f"prefect server{again}: {info['ui_url']} (pid {info['server']['pid']}, "
               f"database {info.get('db', 'sqlite')})")
    typer.echo(f"worker: pool {info['pool']} (pid {info['worker']['pid']}), "
               f"AWS_ENDPOINT_URL={info.get('sandbox_endpoint')}")
    if info.get("ecs_worker"):
        typer.echo(f"ECS worker: pool {info.get('ecs_pool')} (pid {info['ecs_worker']['pid']}), "
                   "flow runs as ECS tasks in the sandbox")
    typer.echo(f"PREFECT_API_URL={info['api_url']}")
    if info.get("registered"):
        _print_registered(info["registered"], info["api_url"])
    else:
        typer.echo("next: papyrus-ops prefect register")


def _print_registered(result: dict, url: str) -> None:
    from papyrus_ops import prefect_local

    if result["work_pool_created"]:
        typer.echo(f"work pool {prefect_local.POOL} created (process)")
    for d in result["deployments"]:
        limit = (f", concurrency {d['concurrency_limit']} {d['collision_strategy'] or ''}"
                 .rstrip() if d["concurrency_limit"] else "")
        crons = "".join(f", cron {s.get('cron')} {s.get('timezone') or ''}".rstrip()
                        for s in d["schedules"] if s.get("cron"))
        typer.echo(f"registered {d['name']} (pool {d['work_pool']}{limit}{crons})")
    if result.get("automations"):
        _print_automations(result["automations"])
    typer.echo(f"UI: {url.removesuffix('/api')}/deployments")


def _print_automations(done: dict) -> None:
    if done.get("block"):
        typer.echo(f"notification block {done['block']['name']}: {done['block']['outcome']}")
    for a in done["automations"]:
        typer.echo(f"automation {a['name']!r}: {a['outcome']}")
    if done.get("skipped"):
        typer.echo(f"automations: {done['skipped']}")


@prefect_app.command("alerts")
def alerts_cmd(
    api_url: str = typer.Option(None, "--api-url",
                                help="Another Prefect API (default: the one `up` started)."),
    env: str = typer.Option("local", "--env", help="deployments/<env>/automations.toml."),
    state_dir: Path = StateOpt,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Register only the environment's automations and their notification block (create or
    update by name; `register` does this too, after the deployments). The webhook URL comes
    from the variable automations.toml names (PAPYRUS_ALERT_WEBHOOK_URL)."""
    from ground.settings import ConfigError, load_env
    from papyrus_ops import prefect_local
    from papyrus_ops.prefect_local.automations import AutomationsError, register_automations

    try:
        load_env(env)
    except ConfigError as e:
        fail(str(e))
    try:
        url = api_url or prefect_local.api_url_of(_state(state_dir))
    except prefect_local.PrefectLocalError as e:
        fail(str(e))
    try:
        done = register_automations(url, env)
    except AutomationsError as e:
        fail(str(e), as_json=as_json, env=env)
    if done.get("skipped"):  # asked for alerts and none could be made: bad input, nothing made
        fail(done["skipped"], as_json=as_json, env=env)
    if as_json:
        typer.echo(json.dumps(done, indent=2))
    else:
        _print_automations(done)


@prefect_app.command("register")
def register_cmd(
    api_url: str = typer.Option(None, "--api-url",
                                help="Another Prefect API (default: the one `up` started)."),
    prefect_file: Path = typer.Option(None, "--prefect-file", help="Default: prefect.yaml."),
    env: str = typer.Option("local", "--env",
                            help="Which deployments: prefect.yaml's `*-<env>` ones."),
    state_dir: Path = StateOpt,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Register prefect.yaml's `*-<env>` deployments (for local, the `papyrus-local` pool is
    created if missing; another env's ECS pool must exist: `papyrus-ops prefect pool`)."""
    from ground.settings import ConfigError, load_env
    from papyrus_ops import prefect_local

    try:  # an unknown environment is one line, exit 2; registering needs no AWS
        load_env(env)
    except ConfigError as e:
        fail(str(e))
    state = _state(state_dir)
    pfile = prefect_file or prefect_local.PREFECT_FILE
    if not Path(pfile).is_file():
        fail(f"no such file: {pfile}")
    try:
        url = api_url or prefect_local.api_url_of(state)
    except prefect_local.PrefectLocalError as e:
        fail(str(e))
    try:
        result = prefect_local.register(url, prefect_file=pfile, state=state, env=env)
    except prefect_local.PrefectLocalError as e:
        typer.echo(f"papyrus-ops: error: {e}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps({k: v for k, v in result.items() if k != "output"}, indent=2))
        return
    _print_registered(result, url)


@prefect_app.command("pool")
def pool_cmd(
    env: str = typer.Option("prd", "--env", help="Environment folder under deployments/."),
    image: str = typer.Option(..., "--image",
                              help="The flow-run image by digest: <registry>/<repo>@sha256:…"),
    api_url: str = typer.Option(None, "--api-url",
                                help="The Prefect API (default: PREFECT_API_URL)."),
    print_only: bool = typer.Option(False, "--print",
                                    help="Print the rendered base job template; change nothing."),
) -> None:
    """Create or update the ECS work pool `papyrus-ecs` from deployments/<env>/ecs-pool.json,
    its account values (VPC, subnets, task security group, account id) looked up in AWS by the
    names in config.toml. Idempotent: an unchanged template is left alone."""
    import os

    from botocore.exceptions import BotoCoreError, ClientError

    from ground.aws import client
    from ground.settings import ConfigError
    from papyrus_ops.prefect_local.ecs_pool import ECS_POOL, apply_ecs_pool
    from tasks.ecs_pool import check_ops_image, pool_variables, render_pool_template
    from tasks.security_groups import SecurityGroupNotFound

    settings = prepare(env)
    url = api_url or os.environ.get("PREFECT_API_URL")
    if not url and not print_only:
        fail("no Prefect API: give --api-url or set PREFECT_API_URL")
    try:  # bad input first: nothing is asked of AWS or Prefect for a refused image
        check_ops_image(image)
    except ConfigError as e:
        fail(str(e))
    try:
        account = client("sts", settings.region).get_caller_identity()["Account"]
        values = pool_variables(settings, account_id=account, ec2=client("ec2", settings.region),
                                ops_image=image)
        template = render_pool_template(settings, values)
    except (ConfigError, SecurityGroupNotFound) as e:
        fail(str(e))
    except (BotoCoreError, ClientError) as e:
        fail(f"AWS: {e}", code=1)
    if print_only:
        typer.echo(json.dumps(template, indent=2))
        return
    try:
        outcome = apply_ecs_pool(url, template)
    except ValueError as e:
        fail(str(e))
    typer.echo(f"work pool {ECS_POOL} {outcome} (ecs; image {image}, cluster "
               f"{values['cluster']}, subnets {', '.join(values['subnet_ids'])}, "
               f"security group {values['task_security_group_id']})")


@prefect_app.command("status")
def status_cmd(state_dir: Path = StateOpt) -> None:
    """What `up` started, and whether it still runs (exit 1 when not running)."""
    from papyrus_ops import prefect_local

    info = prefect_local.read_state(_state(state_dir))
    if not info:
        typer.echo("local prefect not running")
        raise typer.Exit(1)
    typer.echo(json.dumps(info, indent=2))
    if not all(info[n]["running"] for n in prefect_local.PROCESSES if n in info):
        raise typer.Exit(1)


@prefect_app.command("down")
def down_cmd(state_dir: Path = StateOpt) -> None:
    """Stop the worker (and any flow run it started) and the server; nothing left behind."""
    from papyrus_ops import prefect_local

    pids = prefect_local.down(_state(state_dir))
    typer.echo(f"local prefect down ({len(pids)} processes stopped)" if pids
               else "local prefect not running")


@prefect_app.command("cli-server")
def cli_server_cmd(stop: bool = typer.Option(False, "--stop", help="Stop it now.")) -> None:
    """The checkout's Prefect server that CLI calls without PREFECT_API_URL use: started by the
    first call, stopped after PAPYRUS_PREFECT_IDLE_SECONDS idle (exit 1 when not running)."""
    from papyrus_ops.prefect_local import resident

    if stop:
        pids = resident.stop()
        typer.echo(f"cli server stopped ({len(pids)} processes)" if pids
                   else "cli server not running")
        return
    info = resident.read_info()
    if not info:
        typer.echo("cli server not running (the next CLI call starts it)")
        raise typer.Exit(1)
    typer.echo(json.dumps(info, indent=2))


def register(app) -> None:
    app.add_typer(prefect_app, name="prefect")
