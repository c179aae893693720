"""The RDS security group: 5432 inbound only from the ECS task security group, exactly once.

`analyse_rds_ingress` is pure (rules in, findings out) and shared by the check and the `sg`
repair, so both agree on what is wrong:

- an inbound rule *covers* 5432 when its protocol is tcp (or all, ``-1``) and its port range
  contains 5432;
- a covering rule from a CIDR (IPv4 or IPv6) or a prefix list is **open**;
- a covering rule from any security group other than the task group is **foreign**;
- more than one covering rule from the task group is a **duplicate** (the extra ones, keeping
  the exact ``tcp 5432-5432`` rule when there is one);
- no covering rule from the task group is **missing**.

The rule set (describe_security_group_rules for the group) is the ``rds_sg_inbound_after``
evidence.
"""

from __future__ import annotations

from typing import Any

from prefect import task

from ground.settings import Settings
from tasks.check_result import AWS_CHECK_OPTS, FAIL, PASS, result

PG_PORT = 5432


class SecurityGroupNotFound(LookupError):
    pass


def resolve_groups(ec2, settings: Settings) -> dict[str, str]:
    """{"vpc_id", "rds_sg_id", "task_sg_id"} from the names in the environment's config."""
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [settings.vpc_name]}])["Vpcs"]
    if not vpcs:
        raise SecurityGroupNotFound(f"VPC {settings.vpc_name!r} not found")
    if len(vpcs) > 1:
        raise SecurityGroupNotFound(f"VPC name {settings.vpc_name!r} is ambiguous "
                                    f"({', '.join(v['VpcId'] for v in vpcs)})")
    vpc_id = vpcs[0]["VpcId"]
    out = {"vpc_id": vpc_id}
    for key, name in (("rds_sg_id", settings.rds_security_group),
                      ("task_sg_id", settings.task_security_group)):
        groups = ec2.describe_security_groups(Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "group-name", "Values": [name]}])["SecurityGroups"]
        if not groups:
            raise SecurityGroupNotFound(f"security group {name!r} not found in {vpc_id}")
        out[key] = groups[0]["GroupId"]
    return out


def ingress_rules(ec2, group_id: str) -> list[dict[str, Any]]:
    """Every rule of the group (paginated), in a stable order; inbound and outbound."""
    rules: list[dict[str, Any]] = []
    for page in ec2.get_paginator("describe_security_group_rules").paginate(
            Filters=[{"Name": "group-id", "Values": [group_id]}]):
        rules.extend(page.get("SecurityGroupRules", []))
    return sorted(rules, key=lambda r: (r.get("IsEgress", False), r["SecurityGroupRuleId"]))


def covers(rule: dict[str, Any], port: int = PG_PORT) -> bool:
    proto = str(rule.get("IpProtocol", ""))
    if proto == "-1":
        return True
    if proto not in ("tcp", "6"):
        return False
    lo, hi = rule.get("FromPort", -1), rule.get("ToPort", -1)
    return lo is not None and hi is not None and lo <= port <= hi


def source(rule: dict[str, Any]) -> str:
    if rule.get("CidrIpv4"):
        return rule["CidrIpv4"]
    if rule.get("CidrIpv6"):
        return rule["CidrIpv6"]
    if rule.get("PrefixListId"):
        return rule["PrefixListId"]
    return (rule.get("ReferencedGroupInfo") or {}).get("GroupId", "?")


def describe_rule(rule: dict[str, Any]) -> str:
    proto = "all" if str(rule.get("IpProtocol")) == "-1" else rule.get("IpProtocol")
    ports = "" if proto == "all" else f" {rule.get('FromPort')}-{rule.get('ToPort')}"
    return f"{rule['SecurityGroupRuleId']} {proto}{ports} from {source(rule)}"


def analyse_rds_ingress(rules: list[dict[str, Any]], task_sg_id: str,
                        port: int = PG_PORT) -> dict[str, Any]:
    """Findings for the inbound rules covering `port`; `ok` when exactly one, from the task SG."""
    inbound = [r for r in rules if not r.get("IsEgress")]
    covering = [r for r in inbound if covers(r, port)]
    open_, foreign, from_task = [], [], []
    for r in covering:
        if r.get("CidrIpv4") or r.get("CidrIpv6") or r.get("PrefixListId"):
            open_.append(r)
        elif (r.get("ReferencedGroupInfo") or {}).get("GroupId") == task_sg_id:
            from_task.append(r)
        else:
            foreign.append(r)
    exact = [r for r in from_task if str(r.get("IpProtocol")) in ("tcp", "6")
             and r.get("FromPort") == port and r.get("ToPort") == port]
    keep = (exact or from_task or [None])[0]
    duplicates = [r for r in from_task if r is not keep]
    # A kept rule wider than 5432 (e.g. 5400-5500 or all traffic) is replaced by the exact one.
    wide = keep is not None and not exact
    problems = []
    if open_:
        problems.append(f"open to {', '.join(source(r) for r in open_)}")
    if foreign:
        problems.append(f"also from {', '.join(source(r) for r in foreign)}")
    if duplicates:
        problems.append(f"{len(duplicates)} duplicate rule(s) from the task SG")
    if keep is None:
        problems.append("no rule from the task SG")
    elif wide:
        problems.append(f"task SG rule is wider than {port} ({describe_rule(keep)})")
    return {
        "ok": not problems,
        "problems": problems,
        "covering": [describe_rule(r) for r in covering],
        "open": [r["SecurityGroupRuleId"] for r in open_],
        "foreign": [r["SecurityGroupRuleId"] for r in foreign],
        "duplicates": [r["SecurityGroupRuleId"] for r in duplicates],
        "keep": keep["SecurityGroupRuleId"] if keep is not None and not wide else None,
        "wide": [keep["SecurityGroupRuleId"]] if wide else [],
        "missing": keep is None or wide,
        "other_inbound": [describe_rule(r) for r in inbound if not covers(r, port)],
    }


@task(name="check-rds-sg", **AWS_CHECK_OPTS)
def check_rds_sg(ec2, settings: Settings) -> dict[str, Any]:
    """RDS SG: 5432 only from the task SG, no CIDR/prefix list, no duplicates."""
    name = "rds_sg.5432_only_from_task_sg"
    ids = resolve_groups(ec2, settings)
    rules = ingress_rules(ec2, ids["rds_sg_id"])
    a = analyse_rds_ingress(rules, ids["task_sg_id"])
    expected = f"tcp {PG_PORT} from {ids['task_sg_id']} ({settings.task_security_group}) only"
    actual = "; ".join(a["covering"]) or f"nothing allows {PG_PORT}"
    detail = (f"{settings.rds_security_group} ({ids['rds_sg_id']}): "
              + ("5432 only from the task SG" if a["ok"] else "; ".join(a["problems"])
                 + ": repair with `papyrus-ops repair sg`"))
    evidence = {"rds_sg_inbound_after": {
        "group_id": ids["rds_sg_id"], "group_name": settings.rds_security_group,
        "task_sg_id": ids["task_sg_id"], "analysis": a, "SecurityGroupRules": rules}}
    return result(name, expected, actual, PASS if a["ok"] else FAIL, detail, evidence)
