"""The service code registers `/`, `/healthz` and `/dbcheck`: the seed's CI check, as a task.

Two places to ask, and a deploy asks both:

- **The code** (`check_url_map`, before anything runs): the runbook's one-liner in a subprocess
  *from a service source folder* (so it sees that source, not whatever `papyrus` is installed),
  with a scrubbed environment (no DB secret, no token, no PG* variables: `create_app()` needs no
  database). Which folder: the pinned image's own build context when the environment keeps
  them by digest (`[ecr] code_store`, the sandbox's pushes; `pre_rollout_source`), else the
  checkout — and then the evidence says that this is the checkout, not the image.
- **The running task** (`judge_running_url_map`, after the rollout): what each new task
  answers on `/runtime` (its own URL map, and the image digest and task ARN from the ECS task
  metadata endpoint), against what was meant to run: the required routes, the pinned digest,
  the task ECS lists at that address. That is the deploy's ``flask_url_map_after`` evidence,
  as the ops log took it with ECS Exec on the running task.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ground.settings import ROOT
from tasks.check_result import FAIL, PASS, result

SERVICE_DIR = ROOT / "service"
REQUIRED_ROUTES = ("/", "/healthz", "/dbcheck")
# The runbook's CI check (2025-10-21 残課題), sorted for a stable evidence file.
URL_MAP_COMMAND = ("from papyrus import create_app; a=create_app(); "
                   "print(sorted(r.rule for r in a.url_map.iter_rules()))")
# Which `papyrus` was imported goes to stderr, so a wrong import cannot pass silently.
_ORIGIN = "; import papyrus as _p, sys as _s; print('papyrus from ' + _p.__file__, file=_s.stderr)"
_SCRUB_PREFIXES = ("PAPYRUS_", "PG", "DATABASE")


def _scrubbed_env(service_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
    env["PYTHONPATH"] = str(service_dir)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def url_map(service_dir: Path | str = SERVICE_DIR, python: str | None = None,
            timeout: float = 60) -> dict[str, Any]:
    """{"rules": [...] or None, "stdout", "stderr", "returncode", "origin", "command"}."""
    service_dir = Path(service_dir).resolve()
    cmd = [python or sys.executable, "-c", URL_MAP_COMMAND + _ORIGIN]
    proc = subprocess.run(cmd, cwd=service_dir, env=_scrubbed_env(service_dir),
                          capture_output=True, text=True, timeout=timeout)
    rules = None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines:
        try:
            parsed = ast.literal_eval(lines[-1])
            if isinstance(parsed, list):
                rules = [str(r) for r in parsed]
        except (ValueError, SyntaxError):
            rules = None
    origin = ""
    for line in proc.stderr.splitlines():
        if line.startswith("papyrus from "):
            origin = line.removeprefix("papyrus from ").strip()
    return {"rules": rules, "stdout": proc.stdout, "stderr": proc.stderr,
            "returncode": proc.returncode, "origin": origin,
            "command": f"cd {service_dir} && python -c \"{URL_MAP_COMMAND}\""}


def image_code_dir(store: str | Path | None, digest: str | None) -> Path | None:
    """The build context of image `digest` in `store` (`<store>/<hex>/`), if it is there."""
    if not store or not digest:
        return None
    path = Path(store) / digest.removeprefix("sha256:")
    return path if (path / "papyrus" / "__init__.py").is_file() else None


def pre_rollout_source(settings, digest: str) -> tuple[Path, str]:
    """(the service source to check before the rollout, the evidence's first line saying what
    it is): the pinned image's code when the environment keeps it, else the checkout."""
    code = image_code_dir(settings.image_code_store, digest)
    if code is not None:
        return code, f"# source: the code of image {digest} (its build context, {code})\n"
    return SERVICE_DIR, (
        f"# source: the checkout ({SERVICE_DIR}), NOT image {digest}: this environment keeps "
        "no code by digest. The authoritative URL map is the running task's "
        "(flask_url_map_after.log, after the rollout).\n")


@task(name="check-service-url-map", cache_policy=NO_CACHE, persist_result=False)
def check_url_map(service_dir: Path | str = SERVICE_DIR,
                  required: tuple[str, ...] = REQUIRED_ROUTES,
                  python: str | None = None, evidence_name: str = "flask_url_map_after",
                  note: str = "") -> dict[str, Any]:
    name = "service.url_map"
    service_dir = Path(service_dir).resolve()
    expected = list(required)
    if not (service_dir / "papyrus" / "__init__.py").is_file():
        return result(name, expected, "no service source", FAIL,
                      f"{service_dir} has no papyrus package")
    out = url_map(service_dir, python)
    log = (f"{note}$ {out['command']}\n{out['stdout']}"
           + (f"# stderr:\n{out['stderr']}" if out["stderr"].strip() else "")
           + f"# exit {out['returncode']}\n")
    evidence = {evidence_name: log}
    if out["rules"] is None:
        last = (out["stderr"].strip().splitlines() or ["no output"])[-1]
        return result(name, expected, "create_app() failed", FAIL,
                      f"exit {out['returncode']}: {last}", evidence)
    origin = Path(out["origin"]).resolve() if out["origin"] else None
    if origin is None or service_dir not in origin.parents:
        return result(name, expected, out["rules"], FAIL,
                      f"imported papyrus from {out['origin'] or '?'}, not from {service_dir}",
                      evidence)
    missing = [r for r in required if r not in out["rules"]]
    detail = (f"all of {', '.join(required)} registered" if not missing else
              f"missing from the URL map: {', '.join(missing)} (source {service_dir})")
    return result(name, expected, out["rules"], PASS if not missing else FAIL, detail, evidence)


def _report_lines(r: dict) -> list[str]:
    body = r.get("body") if isinstance(r.get("body"), dict) else {}
    lines = [f"$ curl -H 'Authorization: Bearer ***' {r.get('url')}  -> {r.get('status')}",
             f"task (ECS at this address): {r.get('ecs_task_arn')}",
             f"task (its metadata endpoint): {body.get('task_arn')}",
             f"task definition: {body.get('task_definition')}",
             f"image digest: {body.get('image_digest')}",
             f"image: {body.get('image')}",
             f"version: {body.get('version')}"]
    if body.get("metadata_error"):
        lines.append(f"metadata: {body['metadata_error']}")
    lines.append(f"url map: {body.get('url_map') if body else r.get('body')}")
    return lines


def judge_running_url_map(reports: list[dict], pinned_digest: str,
                          required: tuple[str, ...] = REQUIRED_ROUTES) -> dict[str, Any]:
    """The running tasks' own answers on /runtime, judged against what was meant to run.

    `reports`: per new task, the probe record (`url`, `status`, `body`) plus `ecs_task_arn`
    (what ECS lists at that address). Fails when a task does not answer, reports another task
    or no task, another digest than `pinned_digest`, or a URL map without a required route.
    The evidence (``flask_url_map_after``) names each task and its digest."""
    name = "service.url_map_running"
    expected = {"routes": list(required), "image_digest": pinned_digest}
    problems, actual = [], []
    for r in reports:
        body = r.get("body") if isinstance(r.get("body"), dict) else {}
        task_id = (r.get("ecs_task_arn") or "?").rsplit("/", 1)[-1]
        if r.get("status") != 200 or not body:
            problems.append(f"task {task_id}: /runtime answered {r.get('status')}")
            actual.append({"task_arn": r.get("ecs_task_arn"), "status": r.get("status")})
            continue
        rules = [str(x) for x in body.get("url_map") or []]
        actual.append({"task_arn": body.get("task_arn"), "image_digest": body.get("image_digest"),
                       "url_map": rules})
        if not body.get("task_arn") or (r.get("ecs_task_arn") is not None
                                        and body["task_arn"] != r["ecs_task_arn"]):
            why = f" ({body['metadata_error']})" if body.get("metadata_error") else ""
            problems.append(f"task {task_id}: its metadata names task "
                            f"{body.get('task_arn') or 'none'}{why}")
        if body.get("image_digest") != pinned_digest:
            problems.append(f"task {task_id}: runs image {body.get('image_digest') or 'unknown'}"
                            f", not the pinned {pinned_digest}")
        missing = [x for x in required if x not in rules]
        if missing:
            problems.append(f"task {task_id}: missing from its URL map: {', '.join(missing)}")
    if not reports:
        problems.append("no new task to ask")
    log = "\n".join([f"# the URL map as the running task reports it (GET /runtime), after the "
                     f"rollout; pinned image {pinned_digest}",
                     *(line for r in reports for line in ["", *_report_lines(r)]),
                     "", f"# verdict: {'FAIL: ' + '; '.join(problems) if problems else 'PASS'}",
                     ""])
    detail = ("; ".join(problems) if problems else
              f"{len(reports)} task(s) run {pinned_digest} with {', '.join(required)}")
    return result(name, expected, actual, FAIL if problems else PASS, detail,
                  {"flask_url_map_after": log})
