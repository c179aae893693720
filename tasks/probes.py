"""Probe the deployed service: `/healthz` (no DB), `/runtime` (what the task itself says it
runs: URL map, image digest, task ARN), then `/dbcheck` (one INSERT over SSL).

Targets come from the environment: `task-ip` asks ECS for the running tasks' private address
(and the host port when ECS reports one), `url` uses the configured base URL. `/dbcheck` inserts
a row, so it is retried only when the request surely did nothing: the connection was refused
before sending, or the service answered 503 (no database, no insert).
"""

from __future__ import annotations

import functools
import os
import ssl
import time

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE

from ground.settings import Settings
from tasks.rollout import _tasks


def probe_targets(ecs, s: Settings, task_definition: str) -> list[str]:
    return [t["url"] for t in task_targets(ecs, s, task_definition)]


def task_targets(ecs, s: Settings, task_definition: str) -> list[dict]:
    """[{"url", "task_arn"}] of the running tasks of `task_definition` (`task_arn` None in
    `url` mode: behind a load balancer, which task answers is the task's own word)."""
    if s.probe_mode == "url":
        return [{"url": s.probe_base_url.rstrip("/"), "task_arn": None}]
    urls = []
    for t in _tasks(ecs, s, "RUNNING"):
        if t["taskDefinitionArn"] != task_definition or t.get("lastStatus") != "RUNNING":
            continue
        ip = next((d["value"] for a in t.get("attachments", []) for d in a.get("details", [])
                   if d["name"] == "privateIPv4Address"), None)
        c = next((c for c in t.get("containers", []) if c["name"] == s.container), {})
        ip = ip or next((n["privateIpv4Address"] for n in c.get("networkInterfaces", [])), None)
        port = next((b["hostPort"] for b in c.get("networkBindings", [])
                     if b.get("containerPort") == s.container_port and b.get("hostPort")),
                    s.container_port)
        if ip:
            urls.append({"url": f"http://{ip}:{port}", "task_arn": t["taskArn"]})
    if not urls:
        raise RuntimeError(f"no running task of {task_definition.rsplit('/', 1)[-1]} to probe")
    return urls


@functools.cache
def _tls(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """httpx's own default verified context (certifi, or SSL_CERT_FILE / SSL_CERT_DIR), made
    once per process and those variables: each `httpx.get` would otherwise parse the whole CA
    bundle again, 20 ms of CPU per probe even for an http:// task address."""
    return httpx.create_ssl_context()


def _get(url: str, headers: dict | None = None, timeout: float = 5.0) -> dict:
    t0 = time.perf_counter()
    r = httpx.get(url, headers=headers or {}, timeout=timeout,
                  verify=_tls(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")))
    try:
        body = r.json()
    except ValueError:
        body = r.text[:2000]
    return {"url": url, "status": r.status_code, "latency_ms": round(1000 * (time.perf_counter()
            - t0), 1), "body": body}


def _retry_if_nothing_happened(task, task_run, state) -> bool:
    try:
        state.result()
    except httpx.ConnectError:
        return True
    except ProbeFailed as e:
        return e.status == 503
    except Exception:  # noqa: BLE001 - anything else may have inserted: don't repeat
        return False
    return False


def records_log(records: list[dict | None]) -> str:
    """The probe records as evidence: one `GET url -> status in ms` line and the body each."""
    return "\n".join(f"GET {r['url']} -> {r['status']} in {r['latency_ms']} ms\n  {r['body']}"
                     for r in records if r)


class ProbeFailed(RuntimeError):
    def __init__(self, message: str, status: int | None = None, record: dict | None = None):
        super().__init__(message)
        self.status, self.record = status, record


@task(name="probe-healthz", cache_policy=NO_CACHE, retries=5, retry_delay_seconds=[0.5, 1, 2, 4, 8])
def probe_healthz(base_url: str) -> dict:
    rec = _get(f"{base_url}/healthz")
    if rec["status"] != 200:
        raise ProbeFailed(f"/healthz answered {rec['status']}", rec["status"], rec)
    return rec


@task(name="probe-runtime", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[0.5, 1, 2])
def probe_runtime(base_url: str, token: str) -> dict:
    """GET /runtime (read-only, so any failure may be retried). The record, whatever the
    status: judging it is `tasks.service_code.judge_running_url_map`'s job."""
    return _get(f"{base_url}/runtime", {"Authorization": f"Bearer {token}"})


@task(name="probe-dbcheck", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 2, 4],
      retry_condition_fn=_retry_if_nothing_happened)
def probe_dbcheck(base_url: str, token: str) -> dict:
    rec = _get(f"{base_url}/dbcheck", {"Authorization": f"Bearer {token}"}, timeout=15)
    body = rec["body"] if isinstance(rec["body"], dict) else {}
    if rec["status"] != 200 or body.get("result") != "INSERT 0 1" or body.get("ssl") is not True:
        raise ProbeFailed(f"/dbcheck answered {rec['status']}: {str(rec['body'])[:200]}",
                          rec["status"], rec)
    return rec


@task(name="read-probe-token", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 2, 4])
def read_probe_token(sm, s: Settings) -> str:
    """The /dbcheck bearer token, registered with the redactor before anyone can print it."""
    from ground.redact import REDACTOR

    token = sm.get_secret_value(SecretId=s.token_secret_id)["SecretString"].strip()
    REDACTOR.add(token)
    if not token:
        raise ValueError(f"secret {s.token_secret_id} is empty")
    return token
