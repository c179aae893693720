"""What every flow does first: settings, redaction, clients, and (for deploys) the lock."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError
from prefect.concurrency.sync import concurrency

from ground import aws
from ground.log_redaction import install_log_redaction
from ground.logs import run_logger
from ground.result import (
    BAD_INPUT,
    FAILED,
    SUCCESS,
    evidence_summary,
    result,
    to_state,
)
from ground.retry import BadInput  # noqa: F401 - the flows' one bad-input error
from ground.settings import ConfigError, Settings, endpoint_refusal, load_env
from tasks import lease


class DeployFailed(RuntimeError):
    """A deploy or rollback ran and did not work (gate, verdict, probe): the message is why."""


@dataclass
class Outcome:
    """How a deploy-like flow went, filled in by `judged()`: the body returns its success
    reason; BadInput is bad input, DeployFailed a failure with its reason, anything else a
    failure with the error (and the traceback in the run's log)."""

    verdict: str = FAILED
    reason: str = ""
    error: str | None = None
    # Told the result dict once it is formed (the deploy's verdict event, ground/events.py),
    # on the interrupted path too.
    on_result: Callable[[dict], object] | None = None

    @contextlib.contextmanager
    def judged(self, what: str):
        try:
            yield self
            self.verdict = SUCCESS
        except BadInput as e:
            self.verdict, self.reason = BAD_INPUT, str(e)
        except DeployFailed as e:
            self.verdict, self.reason = FAILED, str(e)
        except Exception as e:  # noqa: BLE001 - the verdict and evidence must still be written
            self.verdict, self.error = FAILED, f"{type(e).__name__}: {e}"
            self.reason = self.reason or f"{what} failed: {self.error}"
            run_logger().exception("%s failed", what)

    @contextlib.contextmanager
    def evidence_on_interrupt(self, flow: str, env: str, bundle, s3, started: float, data: dict,
                              kms, what_runs):
        """ECS stops a task with SIGTERM and kills it after the container's `stopTimeout` (30 s
        by default; ECS Developer Guide, task definition parameters); Prefect turns SIGTERM
        into `TerminationSignal` in the flow. A flow run's task stopped mid-deploy (StopTask, a
        worker cancelling it) leaves a rollout that ECS carries on without it: before the run
        ends Crashed, its evidence says it was interrupted and what ECS showed then
        (`what_runs()`), and goes to the bucket, instead of vanishing with the task's disk."""
        from prefect.exceptions import TerminationSignal

        try:
            yield
        except (TerminationSignal, SystemExit):
            # SystemExit too: under `prefect flow-run execute` (the ECS worker's command) the
            # engine's process is ended through a system exit when its task is stopped.
            self.verdict = FAILED
            self.error = "TerminationSignal: the process running this flow was told to stop"
            self.reason = (f"{flow} interrupted before its verdict: the task running it was "
                           "stopped; ECS carries on with whatever had been started")
            with contextlib.suppress(Exception):
                data["at_interrupt"] = what_runs()
            bundle.set_context(interrupted=self.reason, ecs_at_interrupt=data.get("at_interrupt"))
            with contextlib.suppress(Exception):
                self.finish(flow, env, bundle, s3, started, data, kms=kms)
            run_logger().error("%s: %s; evidence written", flow, self.reason)
            raise

    def finish(self, flow: str, env: str, bundle, s3, started: float, data: dict, kms=None):
        """Evidence closed (kept local for bad input: a refused input changes nothing, not even
        the bucket) and the flow's return value."""
        res = bundle.finish("pass" if self.verdict == SUCCESS else "fail", s3=s3, kms=kms,
                            upload=self.verdict != BAD_INPUT)
        res = result(flow, env, self.verdict, self.reason, error=self.error, started=started,
                     evidence=evidence_summary(res), data=data)
        if self.on_result:
            self.on_result(res)
        return to_state(res)


def open_run(env: str) -> Settings:
    """Log redaction on, the environment's settings; BadInput for an unknown environment or
    one that runs on AWS while an endpoint override is exported (ground.settings)."""
    install_log_redaction()
    try:
        settings = load_env(env)
    except ConfigError as e:
        raise BadInput(str(e)) from None
    refusal = endpoint_refusal(settings)
    if refusal:
        raise BadInput(refusal)
    return settings


def aws_clients(settings: Settings, *services: str) -> dict:
    return {name: aws.client(name, settings.region) for name in services}


def ensure_limit(name: str, limit: int = 1) -> None:
    """Global concurrency limits must exist on the server before `strict=True` works."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=limit))
        except Exception:
            # Another run created it at the same moment: fine if it now exists.
            client.read_global_concurrency_limit_by_name(name)


@contextlib.contextmanager
def deploy_lock(settings: Settings, s3, wait_seconds: float | None = None,
                lease_wait_seconds: float | None = None):
    """One deploy per service at a time, whatever started it. Two layers:

    1. A Prefect global concurrency limit: the polite queue among the runs of one Prefect API
       (later ones wait their turn in the UI; they are not dropped).
    2. The deploy lease in the evidence bucket (tasks/lease.py): an S3 conditional write that
       also holds between runs of different Prefect APIs (a CI run with its own temporary
       server, a UI run on the shared one). Waits up to deploy.lease_wait_seconds, then
       refuses naming the holder (DeployFailed: verdict failed, nothing changed).

    Yields the lease's `Keeper`: call `check(before=...)` before every change. A lease lost
    while the body runs (taken, deleted, not renewed in time) ends the run failed, even when
    the body finished: what it verified may no longer be what runs."""
    name = f"deploy-{settings.cluster}-{settings.service}".replace("/", "-")
    ensure_limit(name)
    timeout = wait_seconds if wait_seconds is not None else 2 * settings.deploy_timeout_seconds
    with concurrency(name, occupy=1, timeout_seconds=timeout, strict=True,
                     lease_duration=max(300, 2 * settings.deploy_timeout_seconds)):
        try:
            # The lease id is chosen here, once: a retry of the task recognises its own lease.
            held = lease.take(s3, settings, lease.new_lease_id(), lease.owner_info(),
                              lease_wait_seconds)
        except lease.LeaseBusy as e:
            raise DeployFailed(str(e)) from None
        except (ClientError, BotoCoreError) as e:
            # Without the lease there is no "one at a time": refuse, having changed nothing.
            raise DeployFailed(f"could not take the deploy lease "
                               f"s3://{settings.evidence_bucket}/{lease.lease_key(settings)}: "
                               f"{type(e).__name__}: {e}") from None
        keeper = lease.Keeper(s3, settings, held).start()
        try:
            yield keeper
            keeper.check(before="reporting success")
        except lease.LeaseLost as e:
            raise DeployFailed(str(e)) from None
        finally:
            keeper.release()
