"""TLS verify-full, end to end on the sandbox: an environment with `[db] ssl_root_cert` (prd:
the RDS CA bundle the images ship) renders PGSSLMODE=verify-full + PGSSLROOTCERT into the task
definition; the service's tasks and the flows then verify the server certificate and its RDS
name against that CA. Here the CA is the sandbox PostgreSQL's own; another CA is refused by
both (the task exits 3 at its startup check, the circuit breaker rolls back)."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import trustme

from flows.deploy import deploy
from ground.render import render_service_definition, render_task_definition
from ground.settings import load_env
from papyrus_ops.runner import run_flow
from tasks.db import DbConnectError, read_db_secret
from tasks.insert_check import insert_cli_row
from tests.support.sandbox_state import push_variant, service

pytestmark = pytest.mark.usefixtures("prefect_server", "main_schema")


def _env(td: dict, container: str) -> dict:
    c = next(c for c in td["containerDefinitions"] if c["name"] == container)
    return {e["name"]: e["value"] for e in c["environment"]}


def test_prd_renders_verify_full_with_the_images_bundle_and_the_target_group():
    s = load_env("prd")
    assert s.db_ssl_root_cert == "/etc/ssl/rds/global-bundle.pem" and s.target_group == "papyrus-tg"
    variables = {"family": s.family, "container": s.container,
                 "container_port": s.container_port, "image": "i", "region": s.region,
                 "log_group": s.log_group, "task_role_arn": "r", "execution_role_arn": "e",
                 "db_secret_arn": "d", "token_secret_arn": "t", "task_security_group_id": "sg",
                 "subnets": ["s"], "target_group_arn": "arn:tg"}
    env = _env(render_task_definition(s, variables), s.container)
    assert env["PGSSLMODE"] == "verify-full"
    assert env["PGSSLROOTCERT"] == "/etc/ssl/rds/global-bundle.pem"
    assert render_service_definition(s, variables)["loadBalancers"] == [
        {"targetGroupArn": "arn:tg", "containerName": "app", "containerPort": 5000}]


@pytest.fixture
def env_with_ca(sandbox, tmp_path, monkeypatch):
    """A copy of the local env folder whose [db] ssl_root_cert is the CA given."""
    import ground.settings

    def make(ca) -> None:
        copy = tmp_path / "deployments"
        shutil.copytree(sandbox.settings.folder.parent, copy)
        config = copy / "local" / "config.toml"
        config.write_text(config.read_text().replace('ssl_root_cert = ""',
                                                     f'ssl_root_cert = "{ca}"', 1))
        monkeypatch.setattr(ground.settings, "DEPLOYMENTS", copy)

    yield make
    monkeypatch.undo()
    back = run_flow(deploy, env="local", image="latest", skip_preflight=True)
    assert back["verdict"] == "success", back


def test_the_service_and_the_flows_connect_verify_full_with_the_sandbox_ca(
        sandbox, env_with_ca):
    env_with_ca(sandbox.pg.ca_cert)
    result = run_flow(deploy, env="local", image="latest", skip_preflight=True)
    assert result["verdict"] == "success", result
    ecs = sandbox.client("ecs")
    td = ecs.describe_task_definition(taskDefinition=result["data"]["task_definition"])[
        "taskDefinition"]
    env = _env(td, sandbox.settings.container)
    assert (env["PGSSLMODE"], env["PGSSLROOTCERT"]) == ("verify-full", str(sandbox.pg.ca_cert))
    # The new task passed its startup check and inserted over verify-full (/dbcheck), and so
    # did the flow's own CLI insert.
    assert result["data"]["probes"]["dbcheck"]["result"] == "INSERT 0 1"
    assert result["data"]["probes"]["cli"]["ssl"] is True


def test_another_ca_is_refused_by_the_flows_and_by_the_service(sandbox, env_with_ca, tmp_path):
    # Another CA (trustme's, its own name): what the server presents does not chain to it.
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    secret = read_db_secret.fn(sandbox.client("secretsmanager"), sandbox.settings.db_secret_id)
    with pytest.raises(DbConnectError, match="certificate verify failed"):
        insert_cli_row.fn(secret, dataclasses.replace(sandbox.settings,
                                                      db_ssl_root_cert=str(other)))
    previous = service(sandbox)["taskDefinition"]
    env_with_ca(other)
    push_variant(sandbox, "wrong-ca")
    result = run_flow(deploy, env="local", image="wrong-ca", skip_preflight=True,
                      timeout_seconds=90)
    assert result["verdict"] == "failed", result
    assert "exit code(s) 3" in result["reason"], result["reason"]
    assert result["data"]["rollback"]["ok"] is True
    assert service(sandbox)["taskDefinition"] == previous
