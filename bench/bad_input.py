"""5. Bad input answered first: `papyrus-ops deploy --image <bad> --env local` on the sandbox.

Two inputs, both wrong before any AWS call could help:
  * `papyrus:no-such-tag` — a well-formed reference to an image ECR does not have;
  * `not a ref`           — a typo in the reference's format.
Two variants, interleaved round by round against ONE sandbox (this process's):
  * current — HEAD as committed, from a git worktree in $TMPDIR (this checkout is shared, and
    colleagues' uncommitted edits in it are not what the row should name);
  * before  — the code at BEFORE_COMMIT (a git worktree beside it), where the whole preflight
    gate ran and `pin_image` retried ECR's deterministic "not found" 3 times.
Both are run as `python -m papyrus_ops.cli deploy …` with the same venv interpreter, cwd and
PYTHONPATH set to that variant's tree (so its modules are imported, not the editable install's),
the sandbox's variables in the environment and NO PREFECT_API_URL, as a CI step runs it (a
flow run then starts Prefect's temporary server). One warm-up run per variant and input comes
first (page cache, the private PREFECT_HOME's database) and is reported apart.

Per run: wall time from the start to the error line on stderr (`papyrus-ops: error: …`, else
the last stderr line) and to the exit, the exit code, the number of stderr lines, whether
"Traceback" appears (stderr or stdout), and the AWS calls the sandbox's fault layer served
during the run (`Faults.served`), mutating ones named; ECS task-definition revisions and the
service's deployments are compared before and after as a second witness.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench.common import PY, ROOT, TMP, clean_env, loadavg, log, save, stats, utc_now, wait_stable

BEFORE_COMMIT = "1a68eac"
# Outside the repo (and outside the bench's scratch dir, which each run removes).
TREES = Path(os.environ.get("PAPYRUS_BENCH_TREES", tempfile.gettempdir()))
INPUTS = {"missing-tag": "papyrus:no-such-tag", "typo": "not a ref"}
GOAL_S = 3.0
ERROR_PREFIX = "papyrus-ops: error:"


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return f"load average {loadavg()}"


def _rev(commit: str, short: bool = False) -> str:
    cmd = ["git", "-C", str(ROOT), "rev-parse", *(["--short"] if short else []), commit]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


def ensure_worktree(path: Path, commit: str) -> bool:
    """A detached git worktree of `commit` at `path`; True when this call created it."""
    if (path / "papyrus_ops").is_dir():
        head = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        if head == _rev(commit):
            return False
        raise RuntimeError(f"{path} exists but is not at {commit} ({head})")
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit],
                   check=True, capture_output=True, text=True)
    return True


def remove_worktree(path: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
                   capture_output=True, text=True)


def _ecs_snapshot(sb) -> dict:
    ecs, s = sb.client("ecs"), sb.settings
    arns = ecs.list_task_definitions(familyPrefix=s.family)["taskDefinitionArns"]
    svc = ecs.describe_services(cluster=s.cluster, services=[s.service])["services"][0]
    return {"revisions": len(arns), "task_definition": svc["taskDefinition"],
            "deployments": sorted(d["id"] for d in svc["deployments"])}


def run_once(sb, tree: Path, image: str, env: dict, timeout: float = 300) -> dict:
    """One `deploy --image image` run of the CLI in `tree`; line arrival times on stderr."""
    before = _ecs_snapshot(sb)
    sb.faults.reset_calls()
    cmd = [PY, "-m", "papyrus_ops.cli", "deploy", "--image", image, "--env", "local"]
    env = {**env, "PYTHONPATH": str(tree)}
    lines: list[tuple[float, str]] = []
    out: list[str] = []
    load0 = loadavg()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)

    def read_err():
        for raw in proc.stderr:
            lines.append((time.monotonic() - t0, raw.decode(errors="replace").rstrip("\n")))

    def read_out():
        out.append(proc.stdout.read().decode(errors="replace"))

    threads = [threading.Thread(target=read_err, daemon=True),
               threading.Thread(target=read_out, daemon=True)]
    for t in threads:
        t.start()
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        code = None
    t_exit = time.monotonic() - t0
    # Whatever the CLI left behind in its session (a temporary Prefect server): ours, by pgid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    if code is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    for t in threads:
        t.join(10)
    calls = sb.faults.served()
    mutating = [f"{c.service}:{c.operation}" for c in calls if c.mutating]
    after = _ecs_snapshot(sb)
    err_lines = [text for _, text in lines if text.strip()]
    hit = [(t, text) for t, text in lines if text.startswith(ERROR_PREFIX)]
    if hit:
        t_err, err_text = hit[0]
    elif err_lines:
        t_err, err_text = next((t, x) for t, x in reversed(lines) if x.strip())
    else:
        t_err, err_text = None, ""
    stdout = "".join(out)
    return {
        "exit_code": code, "seconds_to_error": None if t_err is None else round(t_err, 3),
        "seconds_to_exit": round(t_exit, 3), "stderr_lines": len(err_lines),
        "error_lines": len(hit), "error_line": err_text[:400],
        "traceback": "Traceback" in stdout or any("Traceback" in x for x in err_lines),
        "stdout_lines": len([x for x in stdout.splitlines() if x.strip()]),
        "aws_calls": len(calls), "aws_ops": dict(sorted(Counter(f"{c.service}:{c.operation}" for c in calls).items())),
        "mutating_calls": mutating,
        "ecs_before": before, "ecs_after": after,
        "ecs_changed": before != after,
        "load_start": load0, "load_end": loadavg(),
        "stderr_tail": [x[:300] for x in err_lines[-8:]],
    }


def _summary(runs: list[dict]) -> dict:
    return {
        "runs": len(runs),
        "seconds_to_error": stats(r["seconds_to_error"] for r in runs),
        "seconds_to_exit": stats(r["seconds_to_exit"] for r in runs),
        "exit_codes": sorted({r["exit_code"] for r in runs}, key=str),
        "stderr_lines": stats(r["stderr_lines"] for r in runs),
        "traceback_runs": sum(r["traceback"] for r in runs),
        "mutating_calls": sorted({m for r in runs for m in r["mutating_calls"]}),
        "mutating_runs": sum(bool(r["mutating_calls"]) for r in runs),
        "ecs_changed_runs": sum(r["ecs_changed"] for r in runs),
        "aws_calls": stats(r["aws_calls"] for r in runs),
        "ecr_describe_images": stats(r["aws_ops"].get("ecr:DescribeImages", 0) for r in runs),
        "error_line": runs[-1]["error_line"] if runs else "",
    }


def run(sb, runs: int = 3, keep_trees: bool = False) -> dict:
    """`current` is HEAD as committed (a worktree too, so colleagues' uncommitted edits in this
    checkout are not what gets measured); `before` is BEFORE_COMMIT."""
    commit = _rev("HEAD", short=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                            "papyrus_ops", "ground", "flows", "tasks", "deployments"],
                           capture_output=True, text=True).stdout.strip()
    variants = {"current": TREES / f"bench-current-{commit}",
                "before": TREES / f"bench-before-{BEFORE_COMMIT}"}
    created = [path for path, rev in ((variants["current"], commit),
                                      (variants["before"], BEFORE_COMMIT))
               if ensure_worktree(path, rev)]
    base = clean_env({**sb.env(), "PAPYRUS_SANDBOX_DIR": str(sb.state_dir),
                      "PAPYRUS_EVIDENCE_ROOT": str(TMP / "evidence"),
                      "PREFECT_HOME": str(TMP / "bad-input-prefect-home")})
    # As a CI step runs it: no Prefect API, so a flow run starts the temporary server.
    for k in [k for k in base if k.startswith("PREFECT_API_")]:
        base.pop(k)
    data: dict = {"started": utc_now(), "uptime_start": uptime(), "commit": commit,
                  "checkout_uncommitted_product_files": dirty.splitlines(),
                  "before_commit": BEFORE_COMMIT,
                  "inputs": INPUTS, "goal_s": GOAL_S, "runs_per_cell": runs,
                  "warmup": {}, "runs": {}, "summary": {}}
    try:
        wait_stable(sb)
        for key, image in INPUTS.items():
            for name, path in variants.items():
                log(f"bad_input: warm-up {name} --image {image!r}")
                data["warmup"][f"{name}/{key}"] = run_once(sb, path, image, base)
        for i in range(runs):
            for key, image in INPUTS.items():
                order = list(variants.items())
                if i % 2:
                    order.reverse()
                for name, path in order:
                    r = run_once(sb, path, image, base)
                    r["round"] = i + 1
                    data["runs"].setdefault(f"{name}/{key}", []).append(r)
                    log(f"bad_input: round {i + 1} {name} {key}: error line at "
                        f"{r['seconds_to_error']} s, exit {r['exit_code']} at "
                        f"{r['seconds_to_exit']} s, {r['stderr_lines']} stderr lines, "
                        f"mutating {r['mutating_calls'] or 'none'} (load {r['load_end']})")
    finally:
        if not keep_trees:
            for path in created:
                remove_worktree(path)
    data["summary"] = {k: _summary(v) for k, v in data["runs"].items()}
    for key in INPUTS:
        cur = data["summary"].get(f"current/{key}", {}).get("seconds_to_error", {})
        old = data["summary"].get(f"before/{key}", {}).get("seconds_to_error", {})
        if cur.get("median") and old.get("median"):
            data["summary"][f"ratio/{key}"] = cur["median"] / old["median"]
    data["finished"] = utc_now()
    data["uptime_end"] = uptime()
    save("bad_input", data)
    return data
