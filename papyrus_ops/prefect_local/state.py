"""`<state>/prefect.json`: the pids (and start times) of the local Prefect's processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ground.settings import ROOT
from papyrus_ops.prefect_local.processes import PrefectLocalError, is_same_process

DEFAULT_STATE = Path(os.environ.get("PAPYRUS_PREFECT_DIR", ROOT / ".prefect"))
PROCESSES = ("ecs_worker", "worker", "server", "postgres")  # `down`: workers together, then in turn
OPTIONAL = ("ecs_worker", "postgres")  # only there when `up` started them


def state_file(state: Path = DEFAULT_STATE) -> Path:
    return Path(state) / "prefect.json"


def read_state(state: Path = DEFAULT_STATE) -> dict | None:
    path = state_file(state)
    if not path.exists():
        return None
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    for name in PROCESSES:
        if name in OPTIONAL and not info.get(name):
            continue
        proc = info[name] = info.get(name) or {}
        proc["running"] = bool(proc.get("pid")) and is_same_process(int(proc["pid"]),
                                                                    proc.get("start"))
    return info


def _write_state(state: Path, info: dict) -> None:
    clean = {k: ({kk: vv for kk, vv in v.items() if kk != "running"}
                 if isinstance(v, dict) else v) for k, v in info.items()}
    state_file(state).write_text(json.dumps(clean, indent=2) + "\n")


def api_url_of(state: Path = DEFAULT_STATE) -> str:
    info = read_state(state)
    if not info or not info["server"]["running"]:
        raise PrefectLocalError("the local Prefect server is not running: "
                                "run `papyrus-ops prefect up`")
    return info["api_url"]
