"""The deploy lease: one deploy (or rollback) per cluster and service, whatever started it.

The Prefect concurrency limit (`flows.common.deploy_lock`) only orders runs of one Prefect API:
a CLI run from CI with its own temporary server and a UI run on the shared server never see
each other's limit. The lease is held in AWS itself, as one object in the evidence bucket,
``locks/deploy/<cluster>/<service>.json``, written with S3 conditional writes:

- **take**: ``PutObject(IfNoneMatch="*")`` — only one writer can create the key. A taker that
  finds a lease whose holder is gone (expired) replaces it with ``PutObject(IfMatch=<its
  ETag>)``: of two takers only one can match the ETag, the other gets 412.
- **renew**: ``PutObject(IfMatch=<our ETag>)`` every TTL/3 from a background thread
  (`Keeper`); a 412 or 404 means someone else has replaced (or deleted) it.
- **release**: ``DeleteObject(IfMatch=<our ETag>)`` in a `finally`: only the holder's delete
  can match; a lease we no longer hold is left alone.

S3 User Guide, "How to prevent object overwrites with conditional writes" and "How to perform
conditional deletes"; S3 API Reference, PutObject (`If-None-Match`, `If-Match`: 412
Precondition Failed, 409 ConditionalRequestConflict on a concurrent write, to be retried) and
DeleteObject (`If-Match`). Conditional writes and deletes are decided by S3 at write time and
S3 is strongly read-after-write consistent, so the object is a compare-and-swap register.

Why S3 and not a DynamoDB table: the evidence bucket exists in every environment, the flow-run
and CI roles already have object rights on it (no new table, no new IAM), and its bucket policy
(SSE-KMS with the bucket's key) applies to the lease writes like to any other.

**Expiry is judged by S3's clock**, not by comparing hosts' clocks: a lease expires
`ttl_seconds` (the holder's, stored in the object) after its `LastModified`, compared with the
`Date` of the GetObject answer, plus one second because both are whole seconds (never early).
The holder counts from *before* it sent its last successful write, on its own monotonic clock,
and gives the lease up a sixth of a TTL before that: it always knows it has lost the lease
before anyone else may take it.

**Each holding has an id** (`lease_id`, a uuid the caller picks *before* the first attempt). A
write whose answer was lost and that botocore (or a task retry) sends again gets 412; the object
then carries our id, so it is ours: a retry never takes the lease twice, nor locks itself out.

A holder that loses the lease (renewal refused, or not confirmed in time) never learns it in
the middle of an AWS call: `Keeper.check()` raises `LeaseLost` and the flow calls it before
every change (register, update, roll back, probe, record) and before it may report success.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from prefect import task
from prefect.cache_policies import NO_CACHE

from artifacts.storage import sse_args
from ground.logs import run_logger
from ground.retry import is_deterministic, transient_only
from ground.settings import Settings

LEASE_VERSION = 1
# Both LastModified and Date are whole seconds: one more second makes "expired" never early.
_CLOCK_GRANULARITY = 1.0


class LeaseBusy(RuntimeError):
    """Another deploy holds the lease and did not let it go within the wait: nothing changed."""


class LeaseLost(RuntimeError):
    """The lease we held was taken, deleted, or could not be renewed in time."""


def lease_key(s: Settings) -> str:
    return f"locks/deploy/{s.cluster}/{s.service}.json".replace("//", "/")


def new_lease_id() -> str:
    return uuid.uuid4().hex


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def owner_info() -> dict[str, Any]:
    """Who takes the lease, for whoever has to wait for it: the flow run (id and name), the
    Prefect API it belongs to, the host, pid and user."""
    info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        info["user"] = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        info["user"] = str(os.getuid())
    try:
        from prefect.runtime import flow_run

        info["flow_run_id"], info["flow_run_name"] = flow_run.id, flow_run.name
    except Exception:  # noqa: BLE001 - outside a flow run: the fields stay empty
        info["flow_run_id"] = info["flow_run_name"] = None
    try:
        from prefect.settings import PREFECT_API_URL

        # Empty: the run's own temporary server (a CLI run without PREFECT_API_URL).
        info["prefect_api_url"] = PREFECT_API_URL.value() or "temporary (this process)"
    except Exception:  # noqa: BLE001
        info["prefect_api_url"] = None
    return info


def describe_holder(body: dict) -> str:
    """One line naming a holder: flow run, host, since when."""
    o = body.get("owner") or {}
    run = o.get("flow_run_name") or "?"
    rid = o.get("flow_run_id")
    since = body.get("acquired_at")
    return (f"flow run {run!r}" + (f" ({rid})" if rid else "")
            + f" on {o.get('host') or '?'} pid {o.get('pid') or '?'}"
            + (f" user {o['user']}" if o.get("user") else "")
            + (f" via {o['prefect_api_url']}" if o.get("prefect_api_url") else "")
            + (f", since {_iso(since)}" if isinstance(since, (int, float)) else ""))


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _status(e: ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _precondition_failed(e: ClientError) -> bool:
    return _code(e) == "PreconditionFailed" or _status(e) == 412


def _conflict(e: ClientError) -> bool:
    return _code(e) == "ConditionalRequestConflict" or _status(e) == 409


def _missing(e: ClientError) -> bool:
    return _code(e) in ("NoSuchKey", "404", "NotFound") or _status(e) == 404


def _transient(e: BaseException) -> bool:
    return isinstance(e, BotoCoreError) or (isinstance(e, ClientError)
                                            and not is_deterministic(e))


def _put(s3, s: Settings, body: dict, **condition) -> str:
    resp = s3.put_object(Bucket=s.evidence_bucket, Key=lease_key(s),
                         Body=json.dumps(body, sort_keys=True).encode(),
                         ContentType="application/json", **sse_args(s.evidence_kms_key),
                         **condition)
    return resp["ETag"]


def read_lease(s3, s: Settings) -> dict | None:
    """The lease object as S3 has it now: body, etag, and whether it has expired by S3's clock;
    None when there is none."""
    try:
        obj = s3.get_object(Bucket=s.evidence_bucket, Key=lease_key(s))
    except ClientError as e:
        if _missing(e):
            return None
        raise
    raw = obj["Body"].read()
    try:
        body = json.loads(raw)
        body = body if isinstance(body, dict) else {}
    except ValueError:
        body = {}  # not ours to read: it still expires, after our own TTL
    headers = obj.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    try:
        now = parsedate_to_datetime(headers["date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        now = time.time()
    ttl = body.get("ttl_seconds")
    ttl = float(ttl) if isinstance(ttl, (int, float)) and ttl > 0 else float(s.lease_ttl_seconds)
    expires = obj["LastModified"].timestamp() + ttl + _CLOCK_GRANULARITY
    return {"body": body, "etag": obj["ETag"], "expired": now >= expires,
            "expires_in": max(0.0, expires - now)}


def _body(s: Settings, lease_id: str, owner: dict, acquired_at: float, ttl: float,
          renewals: int = 0) -> dict:
    now = time.time()
    return {"version": LEASE_VERSION, "cluster": s.cluster, "service": s.service,
            "lease_id": lease_id, "owner": owner, "acquired_at": acquired_at, "renewed_at": now,
            "renewals": renewals, "ttl_seconds": ttl,
            # For people reading the object; expiry itself is judged by S3's clock.
            "expires_at": now + ttl}


def _retry_unless_busy(task_, task_run, state) -> bool:
    """Retry what botocore gave up on; never a refusal (it already waited its whole time)."""
    try:
        exc = state.result(raise_on_failure=False)
    except BaseException as e:  # noqa: BLE001
        exc = e
    return not isinstance(exc, LeaseBusy) and transient_only(task_, task_run, state)


@task(name="take-deploy-lease", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 2],
      retry_condition_fn=_retry_unless_busy)
def take(s3, s: Settings, lease_id: str, owner: dict, wait_seconds: float | None = None,
         clock: Callable[[], float] = time.monotonic) -> dict:
    """Take the lease, waiting up to `wait_seconds` (None: the environment's
    deploy.lease_wait_seconds) for its holder to release it or to expire; `LeaseBusy` naming
    the holder otherwise. `lease_id` comes from the caller so that a retry of this task (or a
    resend after a lost answer) recognises a lease it already took."""
    log = run_logger()
    ttl = float(s.lease_ttl_seconds)
    wait = float(s.lease_wait_seconds if wait_seconds is None else wait_seconds)
    start = clock()
    deadline = start + wait
    poll = max(0.2, min(5.0, ttl / 6))
    announced = None
    took_over = None
    while True:
        sent = clock()
        acquired_at = time.time()
        try:
            etag = _put(s3, s, _body(s, lease_id, owner, acquired_at, ttl), IfNoneMatch="*")
            return _held(s, lease_id, owner, etag, sent, acquired_at, start, clock, took_over)
        except ClientError as e:
            if not (_precondition_failed(e) or _conflict(e)):
                raise
        current = read_lease(s3, s)
        if current is None:
            continue  # released between our put and our read: try again at once
        body = current["body"]
        if body.get("lease_id") == lease_id:
            # Our own earlier write (its answer was lost, or this is a retry of the task): ours,
            # but when S3 stamped it is unknown, so confirm it now before counting on it.
            acquired_at = body.get("acquired_at") or acquired_at
            sent = clock()
            try:
                etag = _put(s3, s, _body(s, lease_id, owner, acquired_at, ttl),
                            IfMatch=current["etag"])
            except ClientError as e:
                if _precondition_failed(e) or _conflict(e) or _missing(e):
                    time.sleep(0.05)  # changed under us: look again (no busy loop on 409s)
                    continue
                raise
            return _held(s, lease_id, owner, etag, sent, acquired_at, start, clock, took_over)
        if current["expired"]:
            try:
                etag = _put(s3, s, _body(s, lease_id, owner, acquired_at, ttl),
                            IfMatch=current["etag"])
            except ClientError as e:
                if _precondition_failed(e) or _conflict(e) or _missing(e):
                    time.sleep(0.05)  # another taker was first, or it was released: look again
                    continue
                raise
            took_over = describe_holder(body)
            log.warning("deploy lease: took over the expired lease of %s", took_over)
            return _held(s, lease_id, owner, etag, sent, acquired_at, start, clock, took_over)
        holder = describe_holder(body)
        if clock() >= deadline:
            raise LeaseBusy(f"another deploy holds the lease on {s.cluster}/{s.service}: "
                            f"{holder}; waited {wait:.0f}s (deploy.lease_wait_seconds)")
        if announced != holder:
            log.info("deploy lease held by %s; waiting up to %.0fs", holder, wait)
            announced = holder
        time.sleep(max(0.05, min(poll, current["expires_in"], deadline - clock())))


def _held(s, lease_id, owner, etag, sent, acquired_at, start, clock, took_over) -> dict:
    return {"key": lease_key(s), "bucket": s.evidence_bucket, "lease_id": lease_id, "etag": etag,
            # acquired_at: sent (no later than S3's write); held_at: answered (no earlier).
            "owner": owner, "acquired_at": acquired_at, "held_at": time.time(),
            "confirmed_at": sent,
            "ttl_seconds": float(s.lease_ttl_seconds),
            "waited_seconds": round(clock() - start, 3), "took_over": took_over}


def _loss(current: dict | None, lease_id: str) -> str | None:
    """How a holder lost its lease, from the object S3 has now (`read_lease`): "deleted",
    "taken by <holder>", or None while it is still the holder's own."""
    if current is None:
        return "deleted"
    if current["body"].get("lease_id") == lease_id:
        return None
    return "taken by " + describe_holder(current["body"])


class Keeper:
    """Renews a held lease every TTL/3 in a daemon thread until `stop()`. Once the lease is
    lost (taken, deleted, or not confirmed within 5/6 of a TTL), `check()` raises `LeaseLost`
    and the thread stops renewing: the deploy must change nothing more."""

    def __init__(self, s3, s: Settings, held: dict, clock: Callable[[], float] = time.monotonic,
                 logger=None):
        self.s3, self.s, self.held, self.clock = s3, s, dict(held), clock
        self.ttl = float(held["ttl_seconds"])
        self.interval = self.ttl / 3
        self.renewals = 0
        self.lost: str | None = None
        self.released_at: float | None = None
        self.log = logger or run_logger()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="deploy-lease-keeper",
                                        daemon=True)

    def start(self) -> Keeper:
        self._thread.start()
        return self

    # -- the holder's view -------------------------------------------------------------------
    def _deadline(self) -> float:
        """Until when we may act as the holder: 5/6 of a TTL after the last confirmed write's
        send time (S3 cannot have stamped it earlier; others wait a whole TTL after the stamp)."""
        return self.held["confirmed_at"] + self.ttl * 5 / 6

    def check(self, before: str = "") -> None:
        """`LeaseLost` (naming what happened, and the step not taken) once the lease is lost."""
        with self._lock:
            lost, since = self.lost, self.clock() - self.held["confirmed_at"]
            expired = lost is None and self.clock() >= self._deadline()
        if expired:  # the read for the holder's name happens outside the lock
            self._lose(self._now_held_by(f"not renewed for {since:.0f}s (TTL {self.ttl:.0f}s)"),
                       quiet=True)
            lost = self.lost
        if lost:
            raise LeaseLost(f"deploy lease on {self.s.cluster}/{self.s.service} lost ({lost})"
                            + (f": stopped before {before}" if before else ""))

    def _lose(self, why: str, quiet: bool = False) -> None:
        with self._lock:
            if self.lost is not None:
                return
            self.lost = why
        if not quiet:
            self.log.error("deploy lease lost: %s; the deploy changes nothing more", why)

    def _now_held_by(self, why: str) -> str:
        """`why`, and who holds the lease now if someone else does: an expiry on our side is
        often a taker's doing (it judged us expired, or an operator replaced the object), and
        the operator reading the verdict wants the name. One read, best effort — on a slow or
        unreachable S3 the reason stays what we know."""
        try:
            loss = _loss(read_lease(self.s3, self.s), self.held["lease_id"])
        except (ClientError, BotoCoreError):
            return why
        return why if loss is None else f"{why}; now {loss}"

    # -- renewal -----------------------------------------------------------------------------
    def _run(self) -> None:
        wait = self.interval
        while not self._stop.wait(wait):
            wait = self.interval
            if self.lost:
                return
            if self.clock() >= self._deadline():
                self._lose(self._now_held_by(f"not renewed within {self.ttl * 5 / 6:.0f}s"))
                return
            try:
                if not self.renew():
                    wait = max(0.05, self.interval / 3)
            except LeaseLost:
                return
            except Exception as e:  # noqa: BLE001 - a transient failure: try again sooner
                if not _transient(e):
                    self._lose(f"renewal refused: {type(e).__name__}: {e}")
                    return
                self.log.warning("deploy lease renewal failed (will retry): %s", e)
                wait = max(0.05, self.interval / 3)

    def renew(self) -> bool:
        """One renewal: True when S3 confirmed it, False when it should be tried again soon
        (a 409, or our previous renewal applied with its answer lost); `LeaseLost` when the
        object is gone or another holder's."""
        h = self.held
        sent = self.clock()
        body = _body(self.s, h["lease_id"], h["owner"], h["acquired_at"], self.ttl,
                     self.renewals + 1)
        try:
            etag = _put(self.s3, self.s, body, IfMatch=h["etag"])
        except ClientError as e:
            if _conflict(e):
                return False
            if not (_precondition_failed(e) or _missing(e)):
                raise
            current = read_lease(self.s3, self.s)
            why = _loss(current, h["lease_id"])
            if why is None:
                # Our previous renewal was applied but its answer was lost: adopt its ETag and
                # renew again (its send time is unknown, so confirmed_at stays as it was).
                with self._lock:
                    h["etag"] = current["etag"]
                return False
            self._lose(why)
            raise LeaseLost(why) from None
        with self._lock:
            h["etag"], h["confirmed_at"] = etag, sent
            self.renewals += 1
        return True

    # -- the end -----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def release(self) -> bool:
        """Delete the lease if it is still ours (IfMatch on our ETag). False when it was not
        ours any more or could not be deleted: it then expires by itself."""
        self.stop()
        self.released_at = time.time()  # before the delete is sent: no later than the release
        if self.lost:
            return False
        try:
            self.s3.delete_object(Bucket=self.s.evidence_bucket, Key=lease_key(self.s),
                                  IfMatch=self.held["etag"])
            return True
        except (ClientError, BotoCoreError) as e:
            # Not ours any more (412/404), or S3 unreachable: the lease expires after its TTL.
            self.log.warning("deploy lease not released (%s); it expires within %.0fs",
                             e, self.ttl)
            return False

    def summary(self) -> dict:
        h = self.held
        return {"key": h["key"], "lease_id": h["lease_id"], "acquired_at": h["acquired_at"],
                "held_at": h["held_at"], "released_at": self.released_at, "renewals": self.renewals,
                "ttl_seconds": self.ttl, "waited_seconds": h["waited_seconds"],
                "took_over": h["took_over"], "lost": self.lost}
