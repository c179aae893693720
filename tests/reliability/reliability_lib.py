"""Helpers for the reliability matrix (imported by name: tests/ has no packages).

Small bits are copied from other test modules on purpose (push_variant, db counts): a test module
here must not depend on another suite's helpers.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from artifacts import verify_manifest
from artifacts.storage import MANIFEST, PENDING, bundle_files
from tests.sandbox_cleanup import forget_monitoring  # noqa: F401 - re-exported for the tests

ROOT = Path(__file__).resolve().parents[2]


# -- ECS / ECR / DB -----------------------------------------------------------------------------
def revisions(sb) -> list[str]:
    ecs = sb.client("ecs")
    pages = ecs.get_paginator("list_task_definitions").paginate(familyPrefix=sb.settings.family)
    return [a for page in pages for a in page["taskDefinitionArns"]]


def service(sb) -> dict:
    return sb.client("ecs").describe_services(cluster=sb.settings.cluster,
                                              services=[sb.settings.service])["services"][0]


def push_variant(sb, tag: str) -> str:
    """Another build of the same code (so it runs) under `tag`, with a digest no earlier push
    of that tag had."""
    from sandbox import image as sandbox_image

    return sandbox_image.push_build(sb.client("ecr"), sb.settings.ecr_repository, tag,
                                    build=f"{tag}-{uuid.uuid4().hex[:8]}")


def sku_rows(sb, source: str, db: str = "papyrus") -> int:
    assert source in ("app", "cli")
    out = sb.pg.psql_admin(f"SELECT count(*) FROM skus WHERE source = '{source}'", db)  # noqa: S608
    return int(out)


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def stable_on(sb, task_definition: str) -> bool:
    """What `aws ecs wait services-stable` accepts, on a given revision."""
    svc = service(sb)
    deps = svc["deployments"]
    return (len(deps) == 1 and deps[0].get("rolloutState") == "COMPLETED"
            and svc["runningCount"] == svc["desiredCount"]
            and svc["taskDefinition"] == task_definition)


def state_versions(sb) -> int:
    """Object versions of the last-deploy record (state/<env>/last_deploy.json)."""
    key = f"state/{sb.settings.env}/last_deploy.json"
    resp = sb.client("s3").list_object_versions(Bucket=sb.settings.evidence_bucket, Prefix=key)
    return len([v for v in resp.get("Versions", []) if v["Key"] == key])


# -- evidence -------------------------------------------------------------------------------
def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def local_files(folder: Path) -> dict[str, Path]:
    files = {p.relative_to(folder).as_posix(): p for p in bundle_files(folder)}
    files[MANIFEST] = folder / MANIFEST
    return files


def bucket_versions(sb, bucket: str, prefix: str) -> tuple[dict[str, list[dict]], list[dict]]:
    """{key: [versions]} under `prefix`, and the delete markers there."""
    s3 = sb.client("s3")
    versions: dict[str, list[dict]] = {}
    markers: list[dict] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for v in page.get("Versions", []):
            versions.setdefault(v["Key"], []).append(v)
        markers += page.get("DeleteMarkers", [])
    return versions, markers


def assert_evidence_local(folder: str | Path) -> dict:
    """The bundle is whole on disk: every file listed with its SHA-256, nothing unlisted."""
    folder = Path(folder)
    assert folder.is_dir(), folder
    assert verify_manifest(folder) == [], verify_manifest(folder)
    return json.loads((folder / MANIFEST).read_text())


def assert_evidence_complete(sb, folder: str | Path) -> dict:
    """Local bundle whole, nothing pending, and the bucket holds exactly the same files under
    the manifest's prefix: same bytes (SHA-256 of what S3 returns), one object version each
    (no duplicate upload), nothing missing, nothing extra."""
    folder = Path(folder)
    manifest = assert_evidence_local(folder)
    assert not (folder / PENDING).exists(), (folder / PENDING).read_text()
    bucket, prefix = manifest["bucket"], manifest["key_prefix"]
    assert bucket == sb.settings.evidence_bucket and prefix.endswith("/"), manifest
    local = local_files(folder)
    versions, markers = bucket_versions(sb, bucket, prefix)
    assert markers == []
    assert sorted(versions) == sorted(prefix + rel for rel in local), (sorted(versions), prefix)
    s3 = sb.client("s3")
    for rel, path in local.items():
        key = prefix + rel
        assert len(versions[key]) == 1, f"{key}: {len(versions[key])} versions"
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert sha256(body) == sha256(path.read_bytes()), key
    return manifest


def assert_pending(folder: str | Path) -> dict:
    folder = Path(folder)
    assert_evidence_local(folder)
    marker = folder / PENDING
    assert marker.is_file(), f"{folder}: no {PENDING}"
    return json.loads(marker.read_text())


def upload_pending_twice(sb, capture_dir: Path, folder: str) -> None:
    """`papyrus-ops evidence upload-pending` completes the bundle; a second call finds nothing
    to do and adds no object version."""
    r = cli(capture_dir, "evidence", "upload-pending", "--env", "local", script=True)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert f"{folder}: uploaded: " in r.stdout, r.stdout
    assert_evidence_complete(sb, folder)
    again = cli(capture_dir, "evidence", "upload-pending", "--env", "local", script=True)
    assert again.returncode == 0 and "no pending evidence" in again.stdout, again.stdout
    assert_evidence_complete(sb, folder)  # still one version per key


# -- CLI ----------------------------------------------------------------------------------------
def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PAPYRUS_SANDBOX_DIR", str(ROOT / ".no-sandbox-in-tests"))
    env.update(extra)
    return env


SCRIPT = Path(sys.executable).parent / "papyrus-ops"


def cli(capture_dir: Path, *args: str, timeout: float = 300,
        env: dict[str, str] | None = None, script: bool = False) -> subprocess.CompletedProcess:
    """`python -m papyrus_ops.cli ...` (or, with `script`, the installed `papyrus-ops` console
    script) against the session sandbox; stdout and stderr are kept in the capture folder for
    the canary sweep."""
    argv = [str(SCRIPT)] if script else [sys.executable, "-m", "papyrus_ops.cli"]
    r = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=timeout,
                       env=env or cli_env(), cwd=ROOT)
    name = f"cli-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:8]}.txt"
    (capture_dir / name).write_text(f"$ papyrus-ops {' '.join(args)}\n--- exit {r.returncode}\n"
                                    f"--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}\n")
    return r


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# -- fault hooks --------------------------------------------------------------------------------
class After:
    """Wrap a callable (a Prefect task or a function a flow calls by module attribute): call it,
    then run `action(result)` once (the first time `when(result)` holds)."""

    def __init__(self, fn: Callable, action: Callable[[Any], None],
                 when: Callable[[Any], bool] = lambda _r: True) -> None:
        self.fn, self.action, self.when = fn, action, when
        self.fired = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self.fn(*args, **kwargs)
        if not self.fired and self.when(result):
            self.fired = True
            self.action(result)
        return result


class Before:
    """Wrap a callable: run `action()` once before the first call."""

    def __init__(self, fn: Callable, action: Callable[[], None]) -> None:
        self.fn, self.action = fn, action
        self.fired = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.fired:
            self.fired = True
            self.action()
        return self.fn(*args, **kwargs)


class Watcher(threading.Thread):
    """Poll `condition()` in the background; run `action()` once it holds."""

    def __init__(self, condition: Callable[[], bool], action: Callable[[], None],
                 timeout: float = 240, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.condition, self.action = condition, action
        self.timeout, self.interval = timeout, interval
        self.fired = threading.Event()
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline and not self._stop_event.is_set():
            try:
                if self.condition():
                    self.action()
                    self.fired.set()
                    return
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.error = e
                return
            time.sleep(self.interval)

    def cancel(self) -> None:
        self._stop_event.set()


def restart_endpoint(sb, down_seconds: float) -> tuple[float, float]:
    """The sandbox's AWS endpoint goes away for `down_seconds` and comes back on the same port,
    like a restarted server: the listening socket is closed (new connections are refused) and
    requests on connections that were already open get 503 until it is back. moto's backends
    live in this process, so the state survives, as it would behind a real endpoint.

    Returns (down, up): from `down` every request is refused or answered 503, until `up`."""
    from sandbox.server import _FaultyMotoServer

    _host, port = sb._moto.get_host_and_port()
    rule = sb.faults.unavailable("*", "*", times=None)
    old = sb._moto
    try:
        old.stop()
        old._server.server_close()
        down = time.time()
        time.sleep(down_seconds)
    finally:
        up = time.time()
        new = _FaultyMotoServer(sb.faults, port, sb.iam)
        new.start()
        sb._moto = new
        with sb.faults.lock:
            sb.faults.rules[:] = [r for r in sb.faults.rules if r is not rule]
    return down, up
