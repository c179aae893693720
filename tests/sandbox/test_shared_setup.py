"""What the sandbox process shares instead of rebuilding per request or per session: moto's
host → backend lookup (`sandbox.server._Dispatcher`) and botocore's data loader
(`ground.aws.share_data_loaders`). Each must give exactly what it replaces."""

from __future__ import annotations

import boto3
import pytest
from moto.server import DomainDispatcherApplication, create_backend_app

from ground import aws
from sandbox.server import _Dispatcher

HOSTS = ["s3.us-west-2.amazonaws.com", "ecs.us-west-2.amazonaws.com", "sts.amazonaws.com",
         "iam.amazonaws.com", "cloudtrail.us-east-1.amazonaws.com", "bucket.s3.amazonaws.com",
         "elasticloadbalancing.us-west-2.amazonaws.com", "logs.us-west-2.amazonaws.com",
         "kms.us-west-2.amazonaws.com", "ec2", "s3", "moto_api", "example.org", None]


@pytest.mark.parametrize("host", HOSTS)
def test_the_dispatcher_finds_the_backend_moto_would(host):
    ours, moto = _Dispatcher(create_backend_app), DomainDispatcherApplication(create_backend_app)
    expected = moto.get_backend_for_host(host)
    assert ours.get_backend_for_host(host) == expected
    assert ours.get_backend_for_host(host) == expected  # the remembered answer, the same


def test_every_session_of_the_sandbox_process_shares_one_data_loader(sandbox):
    """After `Sandbox.start`, sessions nobody built through ground.aws — boto3's, moto's own —
    share the loader, so endpoints.json is decoded once per process; their models load as
    before."""
    a, b = boto3.Session(), boto3.Session()
    la = a._session.get_component("data_loader")
    assert la is b._session.get_component("data_loader")
    assert la is aws.botocore_session().get_component("data_loader")
    assert "ecs" in a.get_available_services()
    ecs = b.client("ecs", region_name="us-west-2", endpoint_url=sandbox.env()["AWS_ENDPOINT_URL"])
    assert ecs.meta.service_model.service_name == "ecs"


def test_the_admin_client_of_a_service_is_made_once_and_again_for_new_keys(sandbox, monkeypatch):
    """`Sandbox.client`: one client per service while the admin keys and endpoint stay; they
    answer as a new one would; new admin keys get a new client."""
    ecs = sandbox.client("ecs")
    assert sandbox.client("ecs") is ecs
    assert sandbox.client("s3") is not ecs
    assert ecs.list_clusters()["clusterArns"] == \
        sandbox._new_client("ecs").list_clusters()["clusterArns"]
    monkeypatch.setattr(sandbox, "_admin", {**sandbox._admin, "AWS_SECRET_ACCESS_KEY": "rotated"})
    rotated = sandbox.client("ecs")
    assert rotated is not ecs
    assert rotated._request_signer._credentials.secret_key == "rotated"
