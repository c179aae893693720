"""The ALB access-log bucket (private, SSE-S3, ELB log delivery allowed) and, once a load
balancer is configured, its `access_logs.s3.*` attributes.

ALB access logs only support SSE-S3 (`AES256`) on the target bucket, hence no KMS here. The
bucket policy follows the ELB guide: in Regions that existed before August 2022 the regional
ELB account writes the logs; in newer Regions the `logdelivery.elasticloadbalancing` service
principal does.

Every call here is a whole-configuration put (or a create that tolerates
`BucketAlreadyOwnedByYou`), so applying is idempotent and safe to retry.

moto 5.2.5: a new bucket has no default encryption and no public access block (AWS has both
on by default since 2023), and `get_bucket_policy` re-serialises the policy JSON.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from tasks.monitoring.policies import canonical_policy

BUCKET = "s3_bucket"
LB_ATTRIBUTES = "lb_access_logs"

# Elastic Load Balancing account per Region (Regions available before August 2022).
ELB_ACCOUNTS = {
    "us-east-1": "127311923021", "us-east-2": "033677994240", "us-west-1": "027434742980",
    "us-west-2": "797873946194", "af-south-1": "098369216593", "ap-east-1": "754344448648",
    "ap-south-1": "718504428378", "ap-northeast-1": "582318560864",
    "ap-northeast-2": "600734575887", "ap-northeast-3": "383597477331",
    "ap-southeast-1": "114774131450", "ap-southeast-2": "783225319266",
    "ca-central-1": "985666609251", "eu-central-1": "054676820928",
    "eu-west-1": "156460612806", "eu-west-2": "652711504416", "eu-west-3": "009996457667",
    "eu-south-1": "635631232127", "eu-north-1": "897822967062", "me-south-1": "076674570225",
    "sa-east-1": "507241528517",
}
_PUBLIC_ACCESS_BLOCK = {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                        "BlockPublicPolicy": True, "RestrictPublicBuckets": True}


def log_delivery_policy(bucket: str, prefix: str, account: str, region: str) -> dict[str, Any]:
    path = f"{prefix.strip('/')}/AWSLogs/{account}/*" if prefix.strip("/") else \
        f"AWSLogs/{account}/*"
    principal = ({"AWS": f"arn:aws:iam::{ELB_ACCOUNTS[region]}:root"} if region in ELB_ACCOUNTS
                 else {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"})
    return canonical_policy({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ELBAccessLogDelivery", "Effect": "Allow", "Principal": principal,
             "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/{path}"},
            {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": {"AWS": "*"},
             "Action": "s3:*",
             "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        ],
    })


def desired_bucket(bucket: str, prefix: str, account: str, region: str) -> dict[str, Any]:
    return {
        "PublicAccessBlock": dict(_PUBLIC_ACCESS_BLOCK),
        "SSEAlgorithm": "AES256",
        "ObjectOwnership": "BucketOwnerEnforced",
        "Policy": log_delivery_policy(bucket, prefix, account, region),
    }


def _get(call, missing: tuple[str, ...]):
    try:
        return call()
    except ClientError as e:
        if e.response["Error"]["Code"] in missing:
            return None
        raise


def read_bucket(s3, bucket: str) -> dict[str, Any] | None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as e:
        code = e.response["Error"]["Code"]
        if code in ("404", "NoSuchBucket", "NotFound"):
            return None
        if code in ("403", "AccessDenied"):
            raise PermissionError(f"bucket {bucket} exists but is not ours (403)") from None
        raise
    pab = _get(lambda: s3.get_public_access_block(Bucket=bucket),
               ("NoSuchPublicAccessBlockConfiguration",))
    enc = _get(lambda: s3.get_bucket_encryption(Bucket=bucket),
               ("ServerSideEncryptionConfigurationNotFoundError",))
    own = _get(lambda: s3.get_bucket_ownership_controls(Bucket=bucket),
               ("OwnershipControlsNotFoundError",))
    pol = _get(lambda: s3.get_bucket_policy(Bucket=bucket), ("NoSuchBucketPolicy",))
    rules = (enc or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    return {
        "PublicAccessBlock": (pab or {}).get("PublicAccessBlockConfiguration"),
        "SSEAlgorithm": rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
        if rules else None,
        "ObjectOwnership": (own or {}).get("OwnershipControls", {}).get("Rules", [{}])[0]
        .get("ObjectOwnership"),
        "Policy": canonical_policy(json.loads(pol["Policy"])) if pol else None,
    }


def apply_bucket(s3, action: str, bucket: str, region: str, fields: dict[str, Any],
                 changes: dict[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    if action == "create":
        kwargs: dict[str, Any] = {"Bucket": bucket, "ObjectOwnership": "BucketOwnerEnforced"}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            s3.create_bucket(**kwargs)
        except ClientError as e:
            if e.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
                raise
        s3.put_bucket_tagging(Bucket=bucket, Tagging={
            "TagSet": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]})
        changes = fields  # a new bucket: set everything
    if "PublicAccessBlock" in changes:
        s3.put_public_access_block(Bucket=bucket,
                                   PublicAccessBlockConfiguration=fields["PublicAccessBlock"])
    if "SSEAlgorithm" in changes:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": fields["SSEAlgorithm"]}}]})
    if "ObjectOwnership" in changes:
        s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
            "Rules": [{"ObjectOwnership": fields["ObjectOwnership"]}]})
    if "Policy" in changes:
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(fields["Policy"]))
    return {"bucket": bucket}


def desired_lb_attributes(bucket: str, prefix: str) -> dict[str, Any]:
    return {"access_logs.s3.enabled": "true", "access_logs.s3.bucket": bucket,
            "access_logs.s3.prefix": prefix.strip("/")}


def read_lb_attributes(elbv2, lb_arn: str) -> dict[str, Any]:
    attrs = {a["Key"]: a["Value"] for a in
             elbv2.describe_load_balancer_attributes(LoadBalancerArn=lb_arn)["Attributes"]}
    # moto leaves `access_logs.s3.enabled` out until it is set; AWS says "false".
    return {k: attrs.get(k, "false" if k.endswith("enabled") else "")
            for k in desired_lb_attributes("", "")}


def apply_lb_attributes(elbv2, lb_arn: str, fields: dict[str, Any]) -> dict[str, Any]:
    elbv2.modify_load_balancer_attributes(
        LoadBalancerArn=lb_arn, Attributes=[{"Key": k, "Value": v} for k, v in fields.items()])
    return {"load_balancer_arn": lb_arn}
