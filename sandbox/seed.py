"""Seed the sandbox's AWS from `deployments/local/`, with plain boto3 calls, like production.

Everything an operator would find in the Papyrus account: the VPC and its two security groups
(RDS 5432 only from the ECS task group), the RDS instance and its parameter group with
`rds.force_ssl=1`, the DB secret matching RDS, the probe token secret, the roles, the ECR image
of `service/`, the cluster and service (ECS Exec on, circuit breaker with rollback) running a
first revision, a versioned, encrypted, Object-Locked evidence bucket and the key that signs
evidence manifests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ground.render import render_service_definition, render_task_definition
from ground.settings import Settings
from sandbox import image

ACCOUNT_ID = "123456789012"


@dataclass
class Seeded:
    vpc_id: str
    subnets: list[str]
    rds_sg_id: str
    task_sg_id: str
    db_secret_arn: str
    token_secret_arn: str
    image_uri: str  # repo@sha256:...
    task_definition_arn: str


def create_rds(clients, s: Settings, port: int, username: str, dbname: str,
               sg_id: str) -> str:
    """The parameter group and instance; returns the endpoint address."""
    rds = clients("rds")
    rds.create_db_parameter_group(
        DBParameterGroupName=s.parameter_group, DBParameterGroupFamily="postgres15",
        Description="Papyrus PostgreSQL 15 (SSL forced)",
    )
    rds.modify_db_parameter_group(
        DBParameterGroupName=s.parameter_group,
        Parameters=[{"ParameterName": "rds.force_ssl", "ParameterValue": "1",
                     "ApplyMethod": "immediate"}],
    )
    inst = rds.create_db_instance(
        DBInstanceIdentifier=s.rds_instance, Engine="postgres", EngineVersion="15.8",
        DBInstanceClass="db.t4g.micro", AllocatedStorage=20, MasterUsername=username,
        MasterUserPassword="sandbox-not-used", DBName=dbname, Port=port,
        DBParameterGroupName=s.parameter_group, VpcSecurityGroupIds=[sg_id],
        PubliclyAccessible=False, StorageEncrypted=True,
    )["DBInstance"]
    return inst["Endpoint"]["Address"]


def create_network(clients, s: Settings) -> tuple[str, list[str], str, str]:
    ec2 = clients("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16", TagSpecifications=[
        {"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": s.vpc_name}]}])["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24",
                          AvailabilityZone=f"{s.region}{az}")["Subnet"]["SubnetId"]
        for i, az in ((1, "a"), (2, "b"))
    ]
    task_sg = ec2.create_security_group(
        GroupName=s.task_security_group, Description="Papyrus ECS tasks", VpcId=vpc)["GroupId"]
    rds_sg = ec2.create_security_group(
        GroupName=s.rds_security_group, Description="Papyrus RDS", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=rds_sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
        "UserIdGroupPairs": [{"GroupId": task_sg, "Description": "Papyrus ECS tasks"}]}])
    return vpc, subnets, rds_sg, task_sg


def create_secrets(clients, s: Settings, db_secret: dict, token: str) -> tuple[str, str]:
    sm = clients("secretsmanager")
    db_arn = sm.create_secret(Name=s.db_secret_id, SecretString=json.dumps(db_secret))["ARN"]
    token_arn = sm.create_secret(Name=s.token_secret_id, SecretString=token)["ARN"]
    return db_arn, token_arn


ADMIN_USER = "papyrus-sandbox-admin"
OPERATOR_USER = "papyrus-operator"


def create_admin(clients) -> dict[str, str]:
    """The sandbox's own management identity (seeding, tests arranging scenarios): an IAM user
    allowed everything. Created while IAM is not enforced yet; returns its keys."""
    iam = clients("iam")
    iam.create_user(UserName=ADMIN_USER)
    iam.put_user_policy(UserName=ADMIN_USER, PolicyName="sandbox-admin", PolicyDocument=json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


def create_operator(clients, role_arns: list[str]) -> tuple[dict, dict]:
    """The user whose keys are in the sandbox's credentials file: it may only assume the roles
    (its user record, its access key)."""
    iam = clients("iam")
    user = iam.create_user(UserName=OPERATOR_USER)["User"]
    iam.put_user_policy(UserName=OPERATOR_USER, PolicyName="assume-papyrus-roles",
                        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
                            "Effect": "Allow", "Action": "sts:AssumeRole",
                            "Resource": role_arns}]}))
    return user, iam.create_access_key(UserName=OPERATOR_USER)["AccessKey"]


def alb_log_bucket(s: Settings) -> str:
    from ground.monitoring_settings import load_monitoring

    return load_monitoring(s).log_bucket


def create_signing_key(clients, s: Settings) -> str | None:
    """The asymmetric key that signs evidence manifests (`[evidence] signing_key`, an alias):
    ECC_NIST_P256 for ECDSA_SHA_256, usage SIGN_VERIFY, as Terraform's `aws_kms_key` with
    `customer_master_key_spec` would make it. Returns its ARN (the IAM files' resource). None
    when the environment signs nothing."""
    if not s.evidence_signing_key:
        return None
    kms = clients("kms")
    arn = kms.create_key(Description="papyrus evidence manifest signing (sandbox)",
                         KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY",
                         Tags=[{"TagKey": "Project", "TagValue": "papyrus"}])["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName=s.evidence_signing_key, TargetKeyId=arn)
    return arn


def create_bucket(clients, s: Settings) -> str:
    """The evidence bucket as a careful Terraform module leaves it: versioned, with Object Lock
    (governance mode, `[evidence] retention_days` by default — S3 allows Object Lock only on a
    bucket created with it, and then turns versioning on itself), encrypted by default with a
    customer-managed KMS key, and a bucket policy that refuses any PutObject not naming that
    key (so an upload that falls back to aws/s3 is refused, as in AWS). Returns the key's ARN
    (exported as PAPYRUS_EVIDENCE_KMS_KEY, read by deployments/local/config.toml)."""
    kms, s3 = clients("kms"), clients("s3")
    key_arn = kms.create_key(Description="papyrus evidence (sandbox)",
                             Tags=[{"TagKey": "Project", "TagValue": "papyrus"}]
                             )["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/papyrus-evidence", TargetKeyId=key_arn)
    s3.create_bucket(Bucket=s.evidence_bucket,
                     CreateBucketConfiguration={"LocationConstraint": s.region},
                     ObjectLockEnabledForBucket=s.evidence_retention_days > 0)
    s3.put_bucket_versioning(Bucket=s.evidence_bucket,
                             VersioningConfiguration={"Status": "Enabled"})
    if s.evidence_retention_days > 0:
        s3.put_object_lock_configuration(Bucket=s.evidence_bucket, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE",
                                          "Days": s.evidence_retention_days}}})
    s3.put_bucket_encryption(Bucket=s.evidence_bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                          "KMSMasterKeyID": key_arn},
                   "BucketKeyEnabled": True}]})
    s3.put_bucket_policy(Bucket=s.evidence_bucket, Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyUploadsWithoutTheEvidenceKey", "Effect": "Deny", "Principal": "*",
            "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{s.evidence_bucket}/*",
            "Condition": {"StringNotEquals": {
                "s3:x-amz-server-side-encryption-aws-kms-key-id": key_arn}},
        }],
    }))
    s3.put_public_access_block(Bucket=s.evidence_bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True})
    return key_arn


def push_image(clients, s: Settings) -> str:
    ecr = clients("ecr")
    repo = ecr.create_repository(repositoryName=s.ecr_repository,
                                 imageTagMutability="MUTABLE")["repository"]
    digest = image.push(ecr, s.ecr_repository, ["latest", f"src-{image.tree_hash()[:12]}"])
    return f"{repo['repositoryUri']}@{digest}"


def create_service(clients, s: Settings, variables: dict) -> str:
    ecs = clients("ecs")
    clients("logs").create_log_group(logGroupName=s.log_group)
    ecs.create_cluster(clusterName=s.cluster, settings=[
        {"name": "containerInsights", "value": "enabled"}])
    td = render_task_definition(s, variables)
    arn = ecs.register_task_definition(**td)["taskDefinition"]["taskDefinitionArn"]
    svc = render_service_definition(s, variables)
    ecs.create_service(cluster=s.cluster, serviceName=s.service, taskDefinition=arn, **svc)
    return arn


def push_ops_image(clients, s: Settings) -> str:
    """The flow-run image (`papyrus-ops`, this checkout's code) the ECS pool names."""
    ecr = clients("ecr")
    repo = ecr.create_repository(repositoryName=image.OPS_REPOSITORY,
                                 imageTagMutability="MUTABLE")["repository"]
    digest = image.push_ops(ecr, ["latest", f"src-{image.ops_tree_hash()[:12]}"])
    return f"{repo['repositoryUri']}@{digest}"
