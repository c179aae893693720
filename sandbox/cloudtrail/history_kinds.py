"""The kinds of API calls the synthetic history is drawn from: those of one ECS/RDS workload
(every one naming a resource of it) and account-wide activity naming none."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sandbox.cloudtrail.history_blocks import (
    _AGENT_UA,
    _CLI_UA,
    _CONSOLE_UA,
    _DUMPS,
    _Gen,
    _head,
    _Identity,
    _Kind,
    _Variant,
    _variant,
)

# Other workloads of the same account: they fill the rest of the history and never mention
# Papyrus.
_OTHER_APPS = ("orders", "billing", "ledger", "catalog")


def _app_names(app: str) -> dict[str, str]:
    return {
        "cluster": f"{app}-ecs-prd",
        "service": f"{app}-api-service",
        "task_family": f"{app}-api",
        "secret": f"{app}/prd/db",
        "db_instance": f"{app}-prd",
        "db_parameter_group": f"{app}-prd-pg15",
        "rds_security_group": f"{app}-rds-sg",
        "task_security_group": f"{app}-ecs-task-sg",
        "ecr_repository": app,
        "evidence_bucket": f"{app}-artifacts-prd",
        "task_role": f"{app}TaskRole",
        "task_execution_role": f"{app}TaskExecutionRole",
        "deploy_role": f"{app}-deploy-oidc",
        "github_repository": f"example-org/{app}",
    }


def _app_kinds(gen: _Gen, n: Mapping[str, str], humans: list[_Identity]) -> list[_Kind]:
    """The API calls of one ECS/RDS workload, every one naming a resource of `n`."""
    acct, region, rng = gen.account, gen.region, gen.rng
    arn_role = f"arn:aws:iam::{acct}:role/"
    cluster_arn = f"arn:aws:ecs:{region}:{acct}:cluster/{n['cluster']}"
    service_arn = f"arn:aws:ecs:{region}:{acct}:service/{n['cluster']}/{n['service']}"
    secret_arn = f"arn:aws:secretsmanager:{region}:{acct}:secret:{n['secret']}-{gen.key('', 6)}"
    db_arn = f"arn:aws:rds:{region}:{acct}:db:{n['db_instance']}"
    pg_arn = f"arn:aws:rds:{region}:{acct}:pg:{n['db_parameter_group']}"
    repo_arn = f"arn:aws:ecr:{region}:{acct}:repository/{n['ecr_repository']}"
    registry = f"{acct}.dkr.ecr.{region}.amazonaws.com"
    rds_sg, task_sg = f"sg-{gen.hex(17)}", f"sg-{gen.hex(17)}"
    subnets = [f"subnet-{gen.hex(17)}" for _ in range(2)]
    deploy_session = "GitHubActions"
    deploy = [gen.assumed_role(n["deploy_role"], deploy_session, ua=_CLI_UA) for _ in range(3)]
    tasks = [gen.hex(32) for _ in range(6)]
    task_role = [gen.assumed_role(n["task_role"], t, ip=f"10.0.{rng.randrange(1, 3)}."
                                  f"{rng.randrange(2, 250)}") for t in tasks]
    exec_role = [gen.assumed_role(n["task_execution_role"], t, ip="ecs-tasks.amazonaws.com",
                                  ua=_AGENT_UA, invoked_by="ecs-tasks.amazonaws.com")
                 for t in tasks]
    revisions = sorted(rng.sample(range(2, 120), 6))
    digests = [f"sha256:{gen.hex(64)}" for _ in range(6)]
    tags = [f"v1.{rng.randrange(0, 20)}.{rng.randrange(0, 30)}" for _ in range(6)]
    ecs, sm, rds, ec2, ecr = ("ecs.amazonaws.com", "secretsmanager.amazonaws.com",
                              "rds.amazonaws.com", "ec2.amazonaws.com", "ecr.amazonaws.com")
    kinds: list[_Kind] = []

    def kind(source: str, name: str, weight: float, variants: list[_Variant],
             identities: list[_Identity], region_: str | None = None) -> None:
        kinds.append(_Kind(source, name, weight, _head(source, name, region_ or region),
                           tuple(variants), tuple(identities)))

    def td(rev: int) -> str:
        return f"{n['task_family']}:{rev}"

    td_arn = f"arn:aws:ecs:{region}:{acct}:task-definition/"

    kind(ecs, "DescribeServices", 10, [
        _variant(gen, ecs, True, {"cluster": c, "services": [n["service"]]}, None, [])
        for c in (n["cluster"], cluster_arn)
    ], humans + deploy)
    kind(ecs, "UpdateService", 1, [
        _variant(gen, ecs, False, {
            "cluster": n["cluster"], "service": n["service"], "taskDefinition": td(rev),
            "forceNewDeployment": True, "enableExecuteCommand": True,
            "deploymentConfiguration": {
                "deploymentCircuitBreaker": {"enable": True, "rollback": True},
                "maximumPercent": 200, "minimumHealthyPercent": 100},
        }, {"service": {
            "serviceArn": service_arn, "serviceName": n["service"], "clusterArn": cluster_arn,
            "status": "ACTIVE", "desiredCount": 1, "launchType": "FARGATE",
            "taskDefinition": td_arn + td(rev), "enableExecuteCommand": True}},
            [("AWS::ECS::Service", n["service"], service_arn),
             ("AWS::ECS::Cluster", n["cluster"], cluster_arn)])
        for rev in revisions
    ], deploy * 4 + humans)
    kind(ecs, "RegisterTaskDefinition", 1, [
        _variant(gen, ecs, False, {
            "family": n["task_family"], "taskRoleArn": arn_role + n["task_role"],
            "executionRoleArn": arn_role + n["task_execution_role"], "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"], "cpu": "256", "memory": "512",
            "containerDefinitions": [{
                "name": "app", "image": f"{registry}/{n['ecr_repository']}@{digest}",
                "essential": True,
                "portMappings": [{"containerPort": 5000, "protocol": "tcp"}],
                "environment": [{"name": "PGSSLMODE", "value": "require"}],
                "secrets": [{"name": "DB_SECRET", "valueFrom": secret_arn}]}],
        }, {"taskDefinition": {
            "taskDefinitionArn": td_arn + td(rev), "family": n["task_family"],
            "revision": rev, "status": "ACTIVE"}},
            [("AWS::ECS::TaskDefinition", td(rev), td_arn + td(rev))])
        for rev, digest in zip(revisions, digests, strict=True)
    ], deploy * 4 + humans)
    kind(ecs, "RunTask", 1, [
        _variant(gen, ecs, False, {
            "cluster": n["cluster"], "taskDefinition": td(rev), "count": 1,
            "launchType": "FARGATE", "enableExecuteCommand": True, "startedBy": "schema-init",
            "networkConfiguration": {"awsvpcConfiguration": {
                "subnets": subnets, "securityGroups": [task_sg], "assignPublicIp": "DISABLED"}},
        }, {"tasks": [{
            "taskArn": f"arn:aws:ecs:{region}:{acct}:task/{n['cluster']}/{task}",
            "clusterArn": cluster_arn, "taskDefinitionArn": td_arn + td(rev),
            "lastStatus": "PROVISIONING", "desiredStatus": "RUNNING"}], "failures": []},
            [("AWS::ECS::Cluster", n["cluster"], cluster_arn),
             ("AWS::ECS::TaskDefinition", td(rev), td_arn + td(rev))])
        for rev, task in zip(revisions, tasks, strict=True)
    ], deploy)
    kind(sm, "GetSecretValue", 8, [
        _variant(gen, sm, True, {"secretId": s}, None, [])
        for s in (secret_arn, n["secret"])
    ], exec_role * 3 + humans)
    kind(sm, "PutSecretValue", 0.3, [
        _variant(gen, sm, False, {
            "secretId": n["secret"], "clientRequestToken": gen.uuid(),
            "secretString": "HIDDEN_DUE_TO_SECURITY_REASONS"},
            {"arn": secret_arn, "name": n["secret"], "versionId": gen.uuid(),
             "versionStages": ["AWSCURRENT"]}, [])
        for _ in range(3)
    ], humans)
    kind(rds, "DescribeDBInstances", 6, [
        _variant(gen, rds, True, {"dBInstanceIdentifier": n["db_instance"]}, None, [])
    ], humans + deploy + task_role[:2])
    kind(rds, "RebootDBInstance", 0.2, [
        _variant(gen, rds, False, {"dBInstanceIdentifier": n["db_instance"],
                                   "forceFailover": False},
                 {"dBInstanceIdentifier": n["db_instance"], "dBInstanceClass": "db.t4g.micro",
                  "engine": "postgres", "dBInstanceStatus": "rebooting",
                  "dBInstanceArn": db_arn},
                 [("AWS::RDS::DBInstance", n["db_instance"], db_arn)])
    ], humans)
    kind(rds, "ModifyDBParameterGroup", 0.2, [
        _variant(gen, rds, False, {
            "dBParameterGroupName": n["db_parameter_group"],
            "parameters": [{"parameterName": "rds.force_ssl", "parameterValue": v,
                            "applyMethod": "pending-reboot"}]},
            {"dBParameterGroupName": n["db_parameter_group"]},
            [("AWS::RDS::DBParameterGroup", n["db_parameter_group"], pg_arn)])
        for v in ("1", "0")
    ], humans)
    sg_rule = {"ipProtocol": "tcp", "fromPort": 5432, "toPort": 5432,
               "groups": {"items": [{"groupId": task_sg, "description":
                                     f"postgres from {n['task_security_group']}"}]},
               "ipRanges": {}, "ipv6Ranges": {}, "prefixListIds": {}}
    sg_desc = f"{n['rds_security_group']}: postgres from {n['task_security_group']}"
    sg_arn = f"arn:aws:ec2:{region}:{acct}:security-group/{rds_sg}"
    kind(ec2, "AuthorizeSecurityGroupIngress", 0.3, [
        _variant(gen, ec2, False, {"groupId": rds_sg, "ipPermissions": {"items": [sg_rule]},
                                   "description": sg_desc},
                 {"requestId": gen.uuid(), "_return": True, "securityGroupRuleSet": {"items": [{
                     "groupRuleId": f"sgr-{gen.hex(17)}", "groupId": rds_sg,
                     "groupOwnerId": acct, "isEgress": False, "ipProtocol": "tcp",
                     "fromPort": 5432, "toPort": 5432,
                     "referencedGroupInfo": {"groupId": task_sg, "userId": acct}}]}},
                 [("AWS::EC2::SecurityGroup", rds_sg, sg_arn)])
    ], humans)
    kind(ec2, "RevokeSecurityGroupIngress", 0.3, [
        _variant(gen, ec2, False, {"groupId": rds_sg, "ipPermissions": {"items": [{
            "ipProtocol": "tcp", "fromPort": 5432, "toPort": 5432, "groups": {},
            "ipRanges": {"items": [{"cidrIp": cidr, "description":
                                    f"temporary access to {n['rds_security_group']}"}]},
            "ipv6Ranges": {}, "prefixListIds": {}}]}},
            {"requestId": gen.uuid(), "_return": True},
            [("AWS::EC2::SecurityGroup", rds_sg, sg_arn)])
        for cidr in ("0.0.0.0/0", "10.0.0.0/16")
    ], humans)
    kind(ecr, "BatchGetImage", 4, [
        _variant(gen, ecr, True, {
            "repositoryName": n["ecr_repository"], "registryId": acct,
            "imageIds": [{"imageDigest": d}],
            "acceptedMediaTypes": ["application/vnd.docker.distribution.manifest.v2+json",
                                   "application/vnd.oci.image.manifest.v1+json"]}, None,
            [("AWS::ECR::Repository", n["ecr_repository"], repo_arn)])
        for d in digests
    ], exec_role)
    kind(ecr, "PutImage", 1, [
        _variant(gen, ecr, False, {
            "repositoryName": n["ecr_repository"], "registryId": acct, "imageTag": tag,
            "imageManifestMediaType": "application/vnd.docker.distribution.manifest.v2+json"},
            {"image": {"registryId": acct, "repositoryName": n["ecr_repository"],
                       "imageId": {"imageDigest": d, "imageTag": tag}}},
            [("AWS::ECR::Repository", n["ecr_repository"], repo_arn)])
        for tag, d in zip(tags, digests, strict=True)
    ], deploy)
    bucket = n["evidence_bucket"]
    s3_variants = []
    for _ in range(8):
        stamp = f"2024{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}T" \
                f"{rng.randrange(24):02d}{rng.randrange(60):02d}00Z"
        key = f"docs/evidence/{stamp}/{rng.choice(('manifest.json', 'bundle.tar.gz'))}"
        s3_variants.append(_variant(
            gen, "s3.amazonaws.com", False,
            {"bucketName": bucket, "Host": f"{bucket}.s3.{region}.amazonaws.com", "key": key,
             "x-amz-server-side-encryption": "AES256"},
            {"x-amz-server-side-encryption": "AES256"},
            [("AWS::S3::Object", f"{bucket}/{key}", f"arn:aws:s3:::{bucket}/{key}"),
             ("AWS::S3::Bucket", bucket, f"arn:aws:s3:::{bucket}")],
            category="Data"))
    kind("s3.amazonaws.com", "PutObject", 3, s3_variants, deploy + task_role)
    iam = "iam.amazonaws.com"
    kind(iam, "GetRole", 2, [
        _variant(gen, iam, True, {"roleName": r}, None, [])
        for r in (n["task_role"], n["task_execution_role"], n["deploy_role"])
    ], humans + deploy, "us-east-1")
    kind(iam, "PutRolePolicy", 0.3, [
        _variant(gen, iam, False, {"roleName": r, "policyName": f"{r}-inline",
                                   "policyDocument": "{\"Version\":\"2012-10-17\"}"}, None,
                 [("AWS::IAM::Role", r, arn_role + r)])
        for r in (n["task_role"], n["task_execution_role"])
    ], humans, "us-east-1")
    # What Terraform does to the roles (attach a managed policy, rewrite the trust policy):
    # IAM is a global service, so CloudTrail records these in us-east-1 only.
    kind(iam, "AttachRolePolicy", 0.3, [
        _variant(gen, iam, False, {"roleName": r, "policyArn": p}, None,
                 [("AWS::IAM::Role", r, arn_role + r), ("AWS::IAM::Policy", p, p)])
        for r in (n["task_role"], n["task_execution_role"])
        for p in ("arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
                  "arn:aws:iam::aws:policy/CloudWatchLogsFullAccess")
    ], humans, "us-east-1")
    trust = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":'
             '{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}')
    kind(iam, "UpdateAssumeRolePolicy", 0.2, [
        _variant(gen, iam, False, {"roleName": r, "policyDocument": trust}, None,
                 [("AWS::IAM::Role", r, arn_role + r)])
        for r in (n["task_role"], n["task_execution_role"])
    ], humans, "us-east-1")
    sts = "sts.amazonaws.com"
    # A person assuming a service role to debug it, through STS's global endpoint (the AWS
    # CLI v1 and older SDKs default to it): recorded in us-east-1, like IAM's events.
    kind(sts, "AssumeRole", 0.5, [
        _variant(gen, sts, True, {"roleArn": arn_role + r, "roleSessionName": "debug"}, None,
                 [("AWS::IAM::Role", arn_role + r, arn_role + r)])
        for r in (n["task_role"], n["task_execution_role"])
    ], humans, "us-east-1")
    oidc = gen.web_identity(n["github_repository"])
    provider = f"arn:aws:iam::{acct}:oidc-provider/token.actions.githubusercontent.com"
    sts_variants = []
    for ident in deploy:
        role_id = ident.head.split('"principalId":"', 1)[1].split(":", 1)[0]
        sts_variants.append(_variant(gen, sts, True, {
            "roleArn": arn_role + n["deploy_role"], "roleSessionName": deploy_session,
            "durationSeconds": 3600},
            {"credentials": {"accessKeyId": ident.access_key_id,
                             "expiration": "Jan 1, 2025, 1:00:00 AM"},
             "subjectFromWebIdentityToken": oidc.username,
             "assumedRoleUser": {
                 "assumedRoleId": f"{role_id}:{deploy_session}",
                 "arn": f"arn:aws:sts::{acct}:assumed-role/{n['deploy_role']}/{deploy_session}"},
             "provider": provider, "audience": "sts.amazonaws.com"},
            [("AWS::IAM::AccessKey", ident.access_key_id, None),
             ("AWS::STS::AssumedRole", f"{role_id}:{deploy_session}", None),
             ("AWS::IAM::Role", arn_role + n["deploy_role"], arn_role + n["deploy_role"])]))
    kind(sts, "AssumeRoleWithWebIdentity", 1.5, sts_variants, [oidc])
    return kinds


def _generic_kinds(gen: _Gen, humans: list[_Identity]) -> list[_Kind]:
    """Account-wide activity that belongs to no workload (none of it names Papyrus)."""
    acct, region = gen.account, gen.region
    monitoring = [gen.assumed_role("DatadogIntegrationRole", "DatadogAWSIntegration",
                                   ua=_DUMPS("Datadog")) for _ in range(2)]
    sso = [gen.assumed_role("AWSReservedSSO_AdministratorAccess_1a2b3c4d5e6f7a8b", who,
                            ua=_CONSOLE_UA) for who in ("dave@example.com", "erin@example.com")]
    people = humans + sso
    kms_keys = [f"arn:aws:kms:{region}:{acct}:key/{gen.uuid()}" for _ in range(3)]
    kinds: list[_Kind] = []

    def kind(source: str, name: str, weight: float, read_only: bool, requests: list[Any],
             identities: list[_Identity], resources: Any = None, region_: str | None = None,
             event_type: str = "AwsApiCall") -> None:
        variants = [
            _variant(gen, source, read_only, req, None,
                     resources(i) if resources else [], event_type=event_type)
            for i, req in enumerate(requests)
        ]
        kinds.append(_Kind(source, name, weight, _head(source, name, region_ or region),
                           tuple(variants), tuple(identities)))

    kind("kms.amazonaws.com", "Decrypt", 6, True, [
        {"encryptionAlgorithm": "SYMMETRIC_DEFAULT", "keyId": k} for k in kms_keys
    ], people + monitoring, lambda i: [("AWS::KMS::Key", kms_keys[i], kms_keys[i])])
    kind("logs.amazonaws.com", "CreateLogStream", 4, False, [
        {"logGroupName": f"/ecs/{app}-api", "logStreamName": f"ecs/app/{gen.hex(32)}"}
        for app in _OTHER_APPS
    ], people)
    kind("sts.amazonaws.com", "AssumeRole", 3, True, [
        {"roleArn": f"arn:aws:iam::{acct}:role/{r}", "roleSessionName": s}
        for r, s in (("DatadogIntegrationRole", "DatadogAWSIntegration"),
                     ("OrganizationAccountAccessRole", "admin"))
    ], people + monitoring)
    kind("sts.amazonaws.com", "GetCallerIdentity", 2, True, [None], people + monitoring)
    kind("cloudtrail.amazonaws.com", "LookupEvents", 2, True, [
        {"maxResults": 50, "startTime": "Jan 1, 2024, 12:00:00 AM"},
        {"lookupAttributes": [{"attributeKey": "EventName", "attributeValue": "ConsoleLogin"}]},
    ], people + monitoring)
    kind("cloudtrail.amazonaws.com", "DescribeTrails", 0.5, True,
         [{"includeShadowTrails": True}], people + monitoring)
    kind("cloudtrail.amazonaws.com", "GetTrailStatus", 0.5, True, [
        {"name": f"arn:aws:cloudtrail:{region}:{acct}:trail/management-events"}
    ], people + monitoring)
    kind("signin.amazonaws.com", "ConsoleLogin", 0.5, False, [None], people,
         region_="us-east-1", event_type="AwsConsoleSignIn")
    kind("ssm.amazonaws.com", "GetParameter", 3, True, [
        {"name": f"/{app}/prd/feature-flags", "withDecryption": True} for app in _OTHER_APPS
    ], people + monitoring)
    kind("elasticloadbalancing.amazonaws.com", "DescribeTargetHealth", 3, True, [
        {"targetGroupArn": f"arn:aws:elasticloadbalancing:{region}:{acct}:targetgroup/"
                           f"{app}-tg/{gen.hex(16)}"} for app in _OTHER_APPS
    ], monitoring + people)
    kind("dynamodb.amazonaws.com", "DescribeTable", 2, True, [
        {"tableName": f"{app}-sessions"} for app in _OTHER_APPS
    ], monitoring + people)
    kind("lambda.amazonaws.com", "ListFunctions20150331", 1, True, [None], monitoring)
    kind("autoscaling.amazonaws.com", "DescribeAutoScalingGroups", 1, True, [None],
         monitoring)
    kind("route53.amazonaws.com", "ListHostedZones", 0.3, True, [None], people,
         region_="us-east-1")
    kind("monitoring.amazonaws.com", "DescribeAlarms", 2, True, [
        {"alarmNamePrefix": f"{app}-"} for app in _OTHER_APPS
    ], monitoring + people)
    return kinds
