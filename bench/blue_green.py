"""7. Blue/green verdict: ours beside `aws ecs wait services-stable`, right and wrong each.

The sandbox's service made a blue/green service behind the sandbox ALB (the tests' Terraform
shape, tests/support/blue_green.py), with a PAUSE hook after the test traffic shift and a bake
time of one sandbox minute (`PAPYRUS_SANDBOX_SECONDS_PER_MINUTE=1`). Three kinds of run, each
started by an UpdateService to a new revision:

* ship: at the pause we continue at once (what the flow does once the test-listener probes
  pass and no approval is required), ECS shifts production, bakes, cleans up: a success;
* rejected: at the pause we roll back (what a rejection or a failed probe does): ECS shifts
  back, production never served it: a failure;
* crash: the new revision's tasks exit 3 at boot (the DB secret drifted): the circuit breaker
  rolls back before any traffic shift: a failure.

Observers, started right after UpdateService: a 20 Hz DescribeServiceDeployments poller notes
when our service deployment reaches a final status (t0); ours is `tasks.blue_green` (pause,
continue/roll back) then `tasks.rollout.wait_for_verdict`, the flow's own tasks' bodies; the
waiter is awscli v1 `aws ecs wait services-stable`. Latency = verdict time - t0.
"""

from __future__ import annotations

import json
import threading
import time

from bench.common import TMP, loadavg, log, save, start_sandbox, stats
from bench.verdict import Waiter, _register_revision

FINAL = ("SUCCESSFUL", "STOPPED", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED")
HOOK = {"targetType": "PAUSE", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
        "timeoutConfiguration": {"timeoutInMinutes": 600, "action": "ROLLBACK"}}


class FinalWatcher(threading.Thread):
    """Polls our service deployment at `hz` until it reaches a final status."""

    def __init__(self, sb, task_definition: str, since: float, hz: float = 20):
        super().__init__(daemon=True)
        self.sb, self.td, self.since, self.period = sb, task_definition, since, 1.0 / hz
        self.stop = threading.Event()
        self.seen_at: float | None = None
        self.status: str | None = None

    def run(self) -> None:
        from tasks import service_deployments as sdeps

        ecs, arn = self.sb.client("ecs"), None
        while not self.stop.is_set():
            t = time.time()
            sd = (sdeps.describe(ecs, arn) if arn
                  else sdeps.find(ecs, self.sb.settings, self.td, self.since))
            if sd:
                arn = sd["serviceDeploymentArn"]
                if sd.get("status") in FINAL:
                    self.seen_at, self.status = time.time(), sd["status"]
                    return
            self.stop.wait(max(0.0, self.period - (time.time() - t)))


def one_run(sb, kind: str, index: int, poll: float) -> dict:
    from ground import aws
    from tasks import blue_green
    from tasks.rollout import wait_for_verdict
    from tests.support.blue_green import settled
    from tests.support.waiting import wait_until

    s = sb.settings
    ecs, sm = sb.client("ecs"), sb.client("secretsmanager")
    svc = wait_until(lambda: settled(sb), 120, what="the blue/green service settled")
    td = _register_revision(ecs, s.family, f"bg-{kind}-{index}")
    good_secret = None
    if kind == "crash":
        good_secret = sm.get_secret_value(SecretId=s.db_secret_id)["SecretString"]
        sm.put_secret_value(SecretId=s.db_secret_id, SecretString=json.dumps(
            json.loads(good_secret) | {"dbname": "papyrus_drift"}))
        sb.runtime.timing.failure_threshold = 1
    row: dict = {"kind": kind, "index": index}
    try:
        started = time.time()
        resp = ecs.update_service(
            cluster=s.cluster, service=s.service, taskDefinition=td, forceNewDeployment=True,
            deploymentConfiguration=svc["deploymentConfiguration"] | {
                "bakeTimeInMinutes": 1, "lifecycleHooks": [HOOK]})
        dep_id = next(d["id"] for d in resp["service"]["deployments"] if d["status"] == "PRIMARY")
        watcher, waiter = FinalWatcher(sb, td, started), Waiter(sb)
        watcher.start()
        waiter.start()
        client = aws.client("ecs", s.region)
        paused = blue_green.wait_for_test_traffic.fn(client, s, td, started, 120, poll)
        row["paused"] = paused["paused"]
        if paused["paused"]:
            blue_green.continue_deployment.fn(client, paused["arn"], paused["hook_id"],
                                              "CONTINUE" if kind == "ship" else "ROLLBACK")
        ours = wait_for_verdict.fn(client, s, dep_id, td, None, 180, poll, since=started,
                                   elbv2=aws.client("elbv2", s.region))
        watcher.join(180)
        watcher.stop.set()
        if good_secret is not None:  # the rollback must not pick up the drifted secret
            sm.put_secret_value(SecretId=s.db_secret_id, SecretString=good_secret)
            good_secret = None
        waiter.join(700)
        t0 = watcher.seen_at
        expected_ok = kind == "ship"
        row |= {
            "final_status": watcher.status,
            "final_after_update_s": None if t0 is None else round(t0 - started, 3),
            "ours_ok": ours["ok"], "ours_reason": ours["reason"][:300],
            "ours_latency_s": None if t0 is None else round(ours["decided_at"] - t0, 3),
            "ours_right": ours["ok"] is expected_ok,
            "waiter_rc": waiter.returncode,
            "waiter_latency_s": (None if t0 is None or waiter.ended_at is None
                                 else round(waiter.ended_at - t0, 3)),
            "waiter_says": "success" if waiter.returncode == 0 else
                           f"failure/timeout (rc {waiter.returncode})",
            "waiter_right": (waiter.returncode == 0) is expected_ok,
            "waiter_stderr": waiter.stderr,
        }
        log(f"blue/green {kind}: {watcher.status} at +{row['final_after_update_s']}s; ours "
            f"{row['ours_latency_s']}s ({'right' if row['ours_right'] else 'WRONG'}); waiter "
            f"{row['waiter_latency_s']}s rc={waiter.returncode} "
            f"({'right' if row['waiter_right'] else 'WRONG'})")
    finally:
        if good_secret is not None:
            sm.put_secret_value(SecretId=s.db_secret_id, SecretString=good_secret)
        sb.runtime.timing.failure_threshold = 3
    return row


def run(runs: int = 3, sb=None) -> dict:
    from tests.support.blue_green import blue_green_env

    own = sb is None
    if own:
        sb = start_sandbox(TMP / "sandbox-blue-green")
    poll = float(sb.settings.deploy_poll_seconds)
    rows = []
    try:
        with blue_green_env(sb, TMP / "blue-green"):
            for i in range(runs):
                for kind in ("ship", "rejected", "crash"):
                    rows.append(one_run(sb, kind, i, poll))
    finally:
        if own:
            sb.stop()
    summary = {kind: {"ours_latency_s": stats(r["ours_latency_s"] for r in rs),
                      "waiter_latency_s": stats(r["waiter_latency_s"] for r in rs),
                      "ours_right": sum(bool(r["ours_right"]) for r in rs),
                      "waiter_right": sum(bool(r["waiter_right"]) for r in rs),
                      "runs": len(rs)}
               for kind in ("ship", "rejected", "crash")
               for rs in [[r for r in rows if r["kind"] == kind]]}
    data = {"poll_seconds": poll, "runs": rows, "summary": summary,
            "measured": {"at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                         "load": loadavg()}}
    save("blue_green", data)
    return data


# -- docs/benchmarks.md: §7 and its goal rows, in place --------------------------------------------
SECTION = "## 7. Blue/green verdict: ours vs `aws ecs wait services-stable`"
KINDS = {"ship": "ship (continued at the pause)", "rejected": "rolled back at the pause",
         "crash": "new tasks crash (circuit breaker)"}


def goal_rows(d: dict) -> list[list]:
    from bench.fmt import met

    s = d.get("summary") or {}
    if not s:
        return []
    right = sum(k["ours_right"] for k in s.values())
    runs = sum(k["runs"] for k in s.values())
    waiter = sum(k["waiter_right"] for k in s.values())
    return [["7", "blue/green: our verdict right on every run (ship, rollback at the pause, "
             "crash)", f"{right}/{runs}; the waiter {waiter}/{runs}", met(right == runs)]]


def section(d: dict) -> str:
    from bench.fmt import med, num, st, table

    lines = [SECTION, "", __doc__.split("\n\n", 1)[1].strip(), ""]
    s = d.get("summary") or {}
    if not s:
        return "\n".join([*lines, "Not run yet (`python -m bench blue_green`).", ""])
    rows = []
    for kind, name in KINDS.items():
        k = s[kind]
        ratio = (med(k["waiter_latency_s"]) / med(k["ours_latency_s"])
                 if med(k["ours_latency_s"]) else None)
        rows.append([name, st(k["ours_latency_s"], 2, "s"), f"{k['ours_right']}/{k['runs']}",
                     st(k["waiter_latency_s"], 1, "s"), f"{k['waiter_right']}/{k['runs']}",
                     f"{num(ratio, 0)}×" if ratio else "–"])
    lines += [table(["deployment", "ours: latency", "ours right", "waiter: latency",
                     "waiter right", "waiter/ours"], rows), "", "Every run:", ""]
    lines.append(table(["kind", "final status", "after update s", "ours s", "ours right",
                        "waiter s", "waiter says", "waiter right", "our reason"],
                       [[r["kind"], r["final_status"], num(r["final_after_update_s"], 1),
                         num(r["ours_latency_s"], 2), "yes" if r["ours_right"] else "NO",
                         num(r["waiter_latency_s"], 1), r["waiter_says"],
                         "yes" if r["waiter_right"] else "NO",
                         (r["ours_reason"] or "")[:110].replace("|", "/")]
                        for r in d["runs"]]))
    if d.get("measured"):
        lines += ["", f"Measured {d['measured']['at']}, load average {d['measured']['load']}."]
    lines += ["", "Reading: `services-stable` only asks whether one deployment runs its desired "
              "count. A blue/green deployment rolled back at its pause, or whose green tasks "
              "crash, ends exactly so — on the old revision — and the waiter exits 0: it calls "
              "every rollback a success. Ours reads the service deployment (ROLLBACK_SUCCESSFUL "
              "is a failure with its reason) and, for a success, the tasks and their targets.",
              ""]
    return "\n".join(lines) + "\n"


def update_doc(d: dict, doc):
    from bench.in_place import update_in_place

    return update_in_place(doc, "7", SECTION, section(d), goal_rows(d))
