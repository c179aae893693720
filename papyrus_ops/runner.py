"""What every command shares: one way to refuse input, one way to run a flow, one way to answer.

    settings = prepare(env, as_json)        # bad env / sandbox not up -> one line, exit 2
    res = run_flow(deploy, env=env, ...)    # the flow's result dict (ground.result), any state
    answer(res, as_json, human=print_it)    # prints, then exits with ground.result.exit_code

Exit codes: 0 success, 1 failed, 2 bad input (one line on stderr, nothing changed). With
`--json`, stdout carries the result dict — for bad input too — and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from typing import Any, NoReturn

import typer

from ground import result as contract
from ground.log_redaction import install_log_redaction
from ground.redact import REDACTOR
from ground.settings import ConfigError, Settings, apply_env_file, endpoint_refusal, load_env

EnvOpt = typer.Option("local", "--env", "-e", help="Environment folder under deployments/.")
JsonOpt = typer.Option(False, "--json", help="Print the result as JSON on stdout (CI).")


def emit_json(res: dict[str, Any]) -> None:
    typer.echo(json.dumps(REDACTOR.redact_obj(res), indent=2, default=str))


def fail(message: str, code: int = 2, *, as_json: bool = False, flow: str = "",
         env: str = "") -> NoReturn:
    """One line on stderr (and, with --json, the bad-input result on stdout), then exit."""
    line = contract.one_line(message)
    if as_json:
        verdict = contract.BAD_INPUT if code == 2 else contract.FAILED
        emit_json(contract.result(flow, env, verdict, line, error=line))
    typer.echo(f"papyrus-ops: error: {line}", err=True)
    raise typer.Exit(code)


def prepare(env: str, as_json: bool = False, flow: str = "") -> Settings:
    """Settings for `env`, its env file applied, log redaction on. Bad input exits 2."""
    install_log_redaction()
    try:
        settings = load_env(env)
    except ConfigError as e:
        fail(str(e), as_json=as_json, flow=flow, env=env)
    apply_env_file(settings)
    refusal = endpoint_refusal(settings)
    if refusal:
        fail(refusal, as_json=as_json, flow=flow, env=env)
    if settings.env_file and "AWS_ENDPOINT_URL" not in os.environ:
        fail(f"environment {env!r} runs on the sandbox, which is not up "
             f"(no {settings.env_file}): run `papyrus-ops sandbox up`",
             as_json=as_json, flow=flow, env=env)
    return settings


def run_flow(flow_fn, **params: Any) -> dict[str, Any]:
    """Run a flow in this process; its result dict whether it Completed or Failed.

    The flow-run heartbeat is off here: it exists so that a server can tell when the process
    running a flow died, but this process is the one waiting for the answer, and Prefect joins
    the heartbeat thread (1 s sleeps) at the end of every run — up to a second per flow
    (docs/benchmarks.md §4). Runs started by a worker keep Prefect's default."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    name = getattr(flow_fn, "name", getattr(flow_fn, "__name__", "flow"))
    with _api() as api_url:
        updates = {}
        if PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() is not None:
            updates[PREFECT_FLOWS_HEARTBEAT_FREQUENCY] = None
        if api_url:
            updates[PREFECT_API_URL] = api_url
        # Only when something changes: a settings copy re-validates every setting (~40 ms).
        overrides = temporary_settings(updates=updates) if updates else contextlib.nullcontext()
        with overrides, _plain_parameters(flow_fn):
            try:
                state = flow_fn(**params, return_state=True)
            except Exception as e:  # noqa: BLE001 - parameter validation and the like
                return contract.crashed(name, params.get("env", ""), f"{type(e).__name__}: {e}")
    return contract.from_state(state, name, params.get("env", ""))


def _plain(value: Any) -> bool:
    """JSON as it is: a value FastAPI's `jsonable_encoder` gives back unchanged (or as an equal
    copy). Exact types only: a str Enum, a tuple or a Path is encoded differently, and keys
    starting with `_sa` are dropped by it (its `sqlalchemy_safe`)."""
    t = type(value)
    if value is None or t in (str, int, float, bool):
        return True
    if t is list:
        return all(_plain(v) for v in value)
    if t is dict:
        return all(type(k) is str and not k.startswith("_sa") and _plain(v)
                   for k, v in value.items())
    return False


@contextlib.contextmanager
def _plain_parameters(flow_fn):
    """While the CLI runs `flow_fn`: its parameters go to the API as they are when they are
    plain JSON (every CLI command's are: strings, numbers, booleans, None).

    Prefect stores a flow run's parameters through `Flow.serialize_parameters`, which imports
    `fastapi.encoders` — all of FastAPI and Starlette, 0.25 s of each call's tax on 2 busy cores
    (docs/benchmarks.md §6) — to encode them, and for plain JSON that encoder returns what it
    was given. Anything else still goes through Prefect's own method, so what the API stores is
    the same either way. Set on the flow object for this run only, then removed."""
    prefect_own = getattr(flow_fn, "serialize_parameters", None)
    if prefect_own is None or "serialize_parameters" in vars(flow_fn):
        yield
        return

    def serialize(parameters: dict[str, Any]) -> dict[str, Any]:
        if all(_plain(v) for v in parameters.values()):
            return dict(parameters)
        return prefect_own(parameters)

    flow_fn.serialize_parameters = serialize
    try:
        yield
    finally:
        del flow_fn.serialize_parameters


@contextlib.contextmanager
def _api():
    """The checkout's resident Prefect server (papyrus_ops.prefect_local.resident) when no API
    is given: later calls skip the temporary server's start. If it cannot start, Prefect's own
    temporary server runs the flow as before (a slow start is not a failed deploy)."""
    from papyrus_ops.prefect_local import resident

    if not resident.enabled():
        yield None
        return
    try:
        held = resident.using()
        api_url = held.__enter__()
    except Exception as e:  # noqa: BLE001 - fall back, saying why
        typer.echo(f"papyrus-ops: the checkout's Prefect server did not start ({e}); "
                   "using a temporary one", err=True)
        yield None
        return
    try:
        yield api_url
    finally:
        held.__exit__(None, None, None)


def answer(res: dict[str, Any], as_json: bool,
           human: Callable[[dict[str, Any]], None] | None = None) -> NoReturn:
    """Print the result (JSON, or the human view and a closing line) and exit with its code."""
    verdict = res.get("verdict")
    if as_json:
        emit_json(res)
    elif verdict != contract.BAD_INPUT:
        if human:
            human(res)
        typer.echo(f"{res.get('flow') or 'papyrus-ops'} {verdict}: "
                   f"{contract.one_line(res.get('reason'))}", err=verdict != contract.SUCCESS)
    if verdict == contract.BAD_INPUT:
        typer.echo(f"papyrus-ops: error: {contract.one_line(res.get('reason'))}", err=True)
    raise typer.Exit(contract.exit_code(res))


def evidence_line(res: dict[str, Any]) -> str:
    ev = res.get("evidence") or {}
    if not ev:
        return "evidence: none"
    where = ev.get("s3_uri") or ("upload pending: " + str(ev.get("pending_reason") or "?")
                                 if ev.get("upload_pending") else "local only")
    return f"evidence: {ev.get('folder')} ({where})"
