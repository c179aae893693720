"""The service code registers `/`, `/healthz` and `/dbcheck`: the seed's CI check, as a task.

It runs the runbook's one-liner in a subprocess *from the service source folder* (so it sees
that source, not whatever `papyrus` is installed), with a scrubbed environment (no DB secret, no
token, no PG* variables: `create_app()` needs no database). The printed URL map is the
``flask_url_map_after`` evidence.
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


@task(name="check-service-url-map", cache_policy=NO_CACHE, persist_result=False)
def check_url_map(service_dir: Path | str = SERVICE_DIR,
                  required: tuple[str, ...] = REQUIRED_ROUTES,
                  python: str | None = None) -> dict[str, Any]:
    name = "service.url_map"
    service_dir = Path(service_dir).resolve()
    expected = list(required)
    if not (service_dir / "papyrus" / "__init__.py").is_file():
        return result(name, expected, "no service source", FAIL,
                      f"{service_dir} has no papyrus package")
    out = url_map(service_dir, python)
    log = (f"$ {out['command']}\n{out['stdout']}"
           + (f"# stderr:\n{out['stderr']}" if out["stderr"].strip() else "")
           + f"# exit {out['returncode']}\n")
    evidence = {"flask_url_map_after": log}
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
