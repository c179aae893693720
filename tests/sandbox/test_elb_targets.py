"""The sandbox's target health (sandbox/elb_targets.py): registrations keyed by Id and Port,
really health-checked over HTTP, through the ELBv2 API as a client sees it."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support import alb as alb_support
from tests.support.waiting import wait_until


class _Healthz(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def app():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def alb(sandbox):
    made = alb_support.create(sandbox, "papyrus-tg-sbx")
    yield made
    alb_support.delete(sandbox, made)


def state(sb, arn, target):
    th = alb_support.health(sb, arn, target)[0]["TargetHealth"]
    return th["State"], th.get("Reason")


def test_a_target_is_health_checked_for_real(sandbox, app, alb):
    elbv2 = sandbox.client("elbv2")
    good, closed = {"Id": "127.0.0.1", "Port": app}, {"Id": "127.0.0.1", "Port": 1}
    elbv2.register_targets(TargetGroupArn=alb.tg_arn, Targets=[good, closed])
    # One address on two ports: two targets (moto kept one per Id).
    assert len(alb_support.health(sandbox, alb.tg_arn)) == 2
    assert state(sandbox, alb.tg_arn, good)[0] == "initial"
    wait_until(lambda: state(sandbox, alb.tg_arn, good) == ("healthy", None), 20,
               what="healthy after HealthyThresholdCount=2 checks")
    assert state(sandbox, alb.tg_arn, closed) == ("unhealthy", "Target.FailedHealthChecks")
    # The path the group checks now answers 404: unhealthy after UnhealthyThresholdCount.
    elbv2.modify_target_group(TargetGroupArn=alb.tg_arn, HealthCheckPath="/missing")
    wait_until(lambda: state(sandbox, alb.tg_arn, good)[0] == "unhealthy", 20,
               what="unhealthy")
    desc = alb_support.health(sandbox, alb.tg_arn, good)[0]["TargetHealth"]
    assert desc["Reason"] == "Target.ResponseCodeMismatch"
    assert desc["Description"] == "Health checks failed with these codes: [404]"
    elbv2.deregister_targets(TargetGroupArn=alb.tg_arn, Targets=[good])
    assert state(sandbox, alb.tg_arn, good) == ("draining", "Target.DeregistrationInProgress")
    wait_until(lambda: state(sandbox, alb.tg_arn, good) == ("unused", "Target.NotRegistered"),
               10, what="gone after the deregistration delay")


def test_an_address_outside_loopback_times_out_and_an_unused_group_is_not_checked(
        sandbox, app, alb):
    elbv2 = sandbox.client("elbv2")
    far = {"Id": "10.20.1.17", "Port": 5000}
    elbv2.register_targets(TargetGroupArn=alb.tg_arn, Targets=[far])
    wait_until(lambda: state(sandbox, alb.tg_arn, far) == ("unhealthy", "Target.Timeout"), 20,
               what="Target.Timeout")
    lonely = alb_support.create(sandbox, "papyrus-tg-sbx2", listener=False)
    try:
        target = {"Id": "127.0.0.1", "Port": app}
        elbv2.register_targets(TargetGroupArn=lonely.tg_arn, Targets=[target])
        assert state(sandbox, lonely.tg_arn, target) == ("unused", "Target.NotInUse")
    finally:
        alb_support.delete(sandbox, lonely)
