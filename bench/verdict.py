"""1. Verdict latency: our `wait_for_verdict` beside `aws ecs wait services-stable`.

On the sandbox's ECS runtime, with controlled timings:
* success: `runtime.timing.start_delay = T`, so the new deployment COMPLETES ~T s (+ the
  service's boot) after the update;
* failure: the DB secret drifted (dbname), so every task of the new revision exits 3 at boot;
  `failure_threshold = 1` makes the circuit breaker FAIL the deployment at the first crash
  (~T s after the update) and roll back.

For each run, three observers start right after `update_service`:
* a 20 Hz `describe_services` poller (its own client) notes the moment our deployment's
  rolloutState turns COMPLETED or FAILED, and the deployment's `updatedAt` at that moment —
  the state change time ("t0");
* our verdict: `tasks.rollout.wait_for_verdict` (the task body, `.fn`, with the production
  client from `ground.aws` and the environment's poll interval), whose `decided_at` is the
  verdict time;
* `aws ecs wait services-stable` (awscli v1 as a subprocess, default 15 s delay) whose exit is
  its verdict time; exit 0 means "stable", i.e. it calls the deploy a success.
Latency = verdict time - t0. Right = the verdict matches what happened (and, for our failure
verdict, names exit code 3).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

from bench.common import TMP, aws_cli, clean_env, log, save, start_sandbox, stats, wait_stable

SUCCESS_GOAL_S = 3.0
FAILURE_GOAL_S = 5.0


class StateWatcher(threading.Thread):
    """Polls describe_services at `hz`; records when `deployment_id` reaches `targets`."""

    def __init__(self, sb, deployment_id: str, targets=("COMPLETED", "FAILED"), hz: float = 20):
        super().__init__(daemon=True)
        self.ecs = sb.client("ecs")
        self.s = sb.settings
        self.dep = deployment_id
        self.targets = targets
        self.period = 1.0 / hz
        self.stop = threading.Event()
        self.seen_at: float | None = None
        self.updated_at: float | None = None
        self.state: str | None = None
        self.polls = 0

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.time()
            svc = self.ecs.describe_services(cluster=self.s.cluster,
                                             services=[self.s.service])["services"][0]
            self.polls += 1
            ours = next((d for d in svc["deployments"] if d["id"] == self.dep), None)
            if ours and ours.get("rolloutState") in self.targets:
                self.seen_at = time.time()
                self.updated_at = ours["updatedAt"].timestamp()
                self.state = ours["rolloutState"]
                return
            self.stop.wait(max(0.0, self.period - (time.time() - t)))

    @property
    def t0(self) -> float | None:
        """The state change: updatedAt, unless it is implausible next to when we saw it."""
        if self.seen_at is None:
            return None
        if self.updated_at is not None and self.seen_at - 2.0 <= self.updated_at <= self.seen_at:
            return self.updated_at
        return self.seen_at


class Waiter(threading.Thread):
    """`aws ecs wait services-stable` in a subprocess; records its exit time and code."""

    def __init__(self, sb):
        super().__init__(daemon=True)
        s = sb.settings
        self.cmd = [aws_cli(), "ecs", "wait", "services-stable", "--cluster", s.cluster,
                    "--services", s.service]
        # awscli keeps assumed-role credentials in ~/.aws/cli/cache, keyed by role and session
        # name, for an hour: the same names in a newer sandbox would reuse keys it never
        # issued (InvalidClientTokenId). A HOME of this sandbox's own keeps them apart.
        home = sb.state_dir / "awscli-home"
        home.mkdir(parents=True, exist_ok=True)
        self.env = clean_env(sb.env()) | {"HOME": str(home)}
        self.returncode: int | None = None
        self.ended_at: float | None = None
        self.stderr = ""

    def run(self) -> None:
        r = subprocess.run(self.cmd, env=self.env, capture_output=True, text=True, timeout=700)
        self.ended_at = time.time()
        self.returncode = r.returncode
        self.stderr = r.stderr.strip()[-300:]


def _register_revision(ecs, family: str, marker: str) -> str:
    """A new revision of the running task definition (one env var differs), as a deploy with a
    new image would make."""
    svc_td = ecs.list_task_definitions(familyPrefix=family, sort="DESC")["taskDefinitionArns"][0]
    td = ecs.describe_task_definition(taskDefinition=svc_td)["taskDefinition"]
    containers = json.loads(json.dumps(td["containerDefinitions"]))
    for c in containers:
        env = [e for e in c.get("environment", []) if e["name"] != "BENCH_RUN"]
        c["environment"] = [*env, {"name": "BENCH_RUN", "value": marker}]
    keys = ("family", "networkMode", "requiresCompatibilities", "cpu", "memory", "taskRoleArn",
            "executionRoleArn")
    kwargs = {k: td[k] for k in keys if td.get(k)}
    return ecs.register_task_definition(containerDefinitions=containers, **kwargs)[
        "taskDefinition"]["taskDefinitionArn"]


def one_run(sb, kind: str, T: float, index: int, poll: float) -> dict:
    from ground import aws
    from tasks.rollout import wait_for_verdict

    s = sb.settings
    ecs = sb.client("ecs")
    sm = sb.client("secretsmanager")
    wait_stable(sb)
    timing = sb.runtime.timing
    digest = sb.seeded.image_uri.split("@", 1)[1]
    td = _register_revision(ecs, s.family, f"{kind}-{index}")
    good_secret = None
    if kind == "failure":
        good_secret = sm.get_secret_value(SecretId=s.db_secret_id)["SecretString"]
        sm.put_secret_value(SecretId=s.db_secret_id, SecretString=json.dumps(
            json.loads(good_secret) | {"dbname": "papyrus_drift"}))
        timing.failure_threshold = 1
    else:
        timing.failure_threshold = 3
    timing.start_delay = T
    result: dict = {"kind": kind, "T": T, "index": index}
    try:
        started = time.time()
        resp = ecs.update_service(cluster=s.cluster, service=s.service, taskDefinition=td,
                                  forceNewDeployment=True)
        dep_id = next(d["id"] for d in resp["service"]["deployments"] if d["status"] == "PRIMARY")
        watcher, waiter = StateWatcher(sb, dep_id), Waiter(sb)
        watcher.start()
        waiter.start()
        ours: dict = {}

        def run_ours():
            ours.update(wait_for_verdict.fn(aws.client("ecs", s.region), s, dep_id, td, digest,
                                            timeout=120, poll=poll, since=started))

        ours_thread = threading.Thread(target=run_ours, daemon=True)
        ours_thread.start()
        ours_thread.join(180)
        watcher.join(180)
        watcher.stop.set()
        if kind == "failure":  # the rollback must not pick up the drifted secret
            sm.put_secret_value(SecretId=s.db_secret_id, SecretString=good_secret)
            good_secret = None
        waiter.join(700)
        t0 = watcher.t0
        result.update({
            "deployment_id": dep_id,
            "state": watcher.state,
            "state_change_after_update_s": None if t0 is None else round(t0 - started, 3),
            "watcher_seen_minus_updatedAt_s": (None if watcher.updated_at is None else
                                              round(watcher.seen_at - watcher.updated_at, 3)),
            "ours_ok": ours.get("ok"),
            "ours_reason": ours.get("reason", "")[:300],
            "ours_latency_s": (None if t0 is None or not ours.get("decided_at")
                               else round(ours["decided_at"] - t0, 3)),
            "waiter_rc": waiter.returncode,
            "waiter_latency_s": (None if t0 is None or waiter.ended_at is None
                                 else round(waiter.ended_at - t0, 3)),
            "waiter_stderr": waiter.stderr,
        })
        expected_ok = kind == "success"
        result["ours_right"] = (ours.get("ok") is expected_ok and (
            expected_ok or "exit code(s) 3" in ours.get("reason", "")))
        result["ours_names_exit_code"] = "exit code(s) 3" in ours.get("reason", "")
        # The waiter's verdict: exit 0 = "stable" = a success; anything else = a failure.
        result["waiter_says"] = ("success" if waiter.returncode == 0 else
                                 f"failure/timeout (rc {waiter.returncode})")
        result["waiter_right"] = (waiter.returncode == 0) is expected_ok
        log(f"verdict {kind} T={T}: state {watcher.state} at +{result['state_change_after_update_s']}"
            f"s; ours {result['ours_latency_s']}s ({'right' if result['ours_right'] else 'WRONG'})"
            f"; waiter {result['waiter_latency_s']}s rc={waiter.returncode} "
            f"({'right' if result['waiter_right'] else 'WRONG'})")
    finally:
        if good_secret is not None:
            sm.put_secret_value(SecretId=s.db_secret_id, SecretString=good_secret)
        timing.start_delay = 0.0
        timing.failure_threshold = 3
        wait_stable(sb, timeout=120)
    return result


def run(runs: int = 3, Ts: tuple[float, ...] = (5.0, 10.0, 15.0), sb=None) -> dict:
    own = sb is None
    if own:
        sb = start_sandbox(TMP / "sandbox-verdict")
    poll = float(sb.settings.deploy_poll_seconds)
    rows = []
    try:
        for i in range(runs):
            for kind in ("success", "failure"):
                rows.append(one_run(sb, kind, Ts[i % len(Ts)], i, poll))
    finally:
        if own:
            sb.stop()
    summary = {}
    for kind in ("success", "failure"):
        rs = [r for r in rows if r["kind"] == kind]
        summary[kind] = {
            "ours_latency_s": stats(r["ours_latency_s"] for r in rs),
            "waiter_latency_s": stats(r["waiter_latency_s"] for r in rs),
            "ours_right": sum(bool(r["ours_right"]) for r in rs),
            "waiter_right": sum(bool(r["waiter_right"]) for r in rs),
            "runs": len(rs),
            "state_change_after_update_s": stats(r["state_change_after_update_s"] for r in rs),
        }
    data = {"poll_seconds": poll, "Ts": list(Ts), "runs": rows, "summary": summary,
            "goals": {"success_s": SUCCESS_GOAL_S, "failure_s": FAILURE_GOAL_S}}
    save("verdict", data)
    return data
