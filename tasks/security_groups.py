"""The RDS security groups: 5432 inbound only from the ECS task security group, exactly once.

What RDS enforces is the set of VPC security groups *attached to the instance*
(``DescribeDBInstances … VpcSecurityGroups``), not a group that happens to carry the configured
name: an inbound rule on any attached group opens the port. So the gate judges every attached
group (`attached_groups`):

- the configured ``rds_security_group`` must be attached (else the check fails "not attached");
  it gets the full analysis below (exactly one rule, from the task SG);
- every other attached group may hold no rule covering 5432 except from the task SG: a CIDR
  (IPv4/IPv6), prefix list or other source group covering 5432 fails the check, naming the
  group and the rule.

`analyse_rds_ingress` is pure (rules in, findings out) and shared by the check and the `sg`
repair, so both agree on what is wrong:

- an inbound rule *covers* 5432 when its protocol is tcp (or all, ``-1``) and its port range
  contains 5432;
- a covering rule from a CIDR (IPv4 or IPv6) or a prefix list is **open**;
- a covering rule from any security group other than the task group is **foreign**;
- more than one covering rule from the task group is a **duplicate** (the extra ones, keeping
  the exact ``tcp 5432-5432`` rule when there is one);
- no covering rule from the task group is **missing**.

The rule set (describe_security_group_rules for the configured group) and every attached group's
rules and findings are the ``rds_sg_inbound_after`` evidence.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from prefect import task

from ground.settings import Settings
from tasks.check_result import AWS_CHECK_OPTS, FAIL, PASS, result
from tasks.secrets_rds import describe_rds

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


def offence(rule: dict[str, Any], names: dict[str, str] | None = None) -> str:
    """The source of a covering rule and the rule itself: ``0.0.0.0/0 via sgr-… tcp 5432-5432``
    (a source group with its name when known)."""
    src = source(rule)
    if names and names.get(src):
        src = f"{src} ({names[src]})"
    proto = "all" if str(rule.get("IpProtocol")) == "-1" else rule.get("IpProtocol")
    ports = "" if proto == "all" else f" {rule.get('FromPort')}-{rule.get('ToPort')}"
    return f"{src} via {rule['SecurityGroupRuleId']} {proto}{ports}"


def analyse_rds_ingress(rules: list[dict[str, Any]], task_sg_id: str,
                        port: int = PG_PORT, names: dict[str, str] | None = None
                        ) -> dict[str, Any]:
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
        problems.append(f"open to {', '.join(offence(r, names) for r in open_)}")
    if foreign:
        problems.append(f"also from {', '.join(offence(r, names) for r in foreign)}")
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


def analyse_extra_group(rules: list[dict[str, Any]], task_sg_id: str, port: int = PG_PORT,
                        names: dict[str, str] | None = None) -> dict[str, Any]:
    """A second group attached to the instance: only its open and foreign rules covering `port`
    matter (a task-SG rule there opens nothing new, and a missing one is not its job)."""
    a = analyse_rds_ingress(rules, task_sg_id, port, names)
    problems = [p for p in a["problems"] if p.startswith(("open to", "also from"))]
    return {**a, "ok": not problems, "problems": problems, "duplicates": [], "wide": [],
            "missing": False, "keep": None}


def group_names(ec2, group_ids: list[str]) -> dict[str, str]:
    """{group id: name} for the ids that exist and are visible; others are left out."""
    out: dict[str, str] = {}
    for gid in dict.fromkeys(group_ids):
        try:
            groups = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"]
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("InvalidGroup.NotFound",
                                                           "InvalidGroupId.Malformed"):
                continue
            raise
        for g in groups:
            out[g["GroupId"]] = g.get("GroupName", "")
    return out


def attached_groups(ec2, rds, settings: Settings) -> dict[str, Any]:
    """The groups RDS enforces, each with its rules and findings.

    ``{"ids": resolve_groups(...), "instance", "attached": [group ids], "configured_attached",
    "groups": [{"group_id", "group_name", "configured", "analysis", "SecurityGroupRules"}],
    "names": {id: name}}``; the configured group first when it is attached.
    """
    ids = resolve_groups(ec2, settings)
    attached = describe_rds(rds, settings)["security_groups"]
    rules = {gid: ingress_rules(ec2, gid) for gid in attached}
    referenced = [(r.get("ReferencedGroupInfo") or {}).get("GroupId") for rs in rules.values()
                  for r in rs]
    names = group_names(ec2, [*attached, ids["task_sg_id"], *(g for g in referenced if g)])
    names.setdefault(ids["rds_sg_id"], settings.rds_security_group)
    names.setdefault(ids["task_sg_id"], settings.task_security_group)
    ordered = sorted(attached, key=lambda g: g != ids["rds_sg_id"])
    groups = []
    for gid in ordered:
        configured = gid == ids["rds_sg_id"]
        judge = analyse_rds_ingress if configured else analyse_extra_group
        groups.append({"group_id": gid, "group_name": names.get(gid, ""),
                       "configured": configured,
                       "analysis": judge(rules[gid], ids["task_sg_id"], names=names),
                       "SecurityGroupRules": rules[gid]})
    return {"ids": ids, "instance": settings.rds_instance, "attached": attached,
            "configured_attached": ids["rds_sg_id"] in attached, "groups": groups,
            "names": names}


def label(group_id: str, names: dict[str, str]) -> str:
    return f"{names[group_id]} ({group_id})" if names.get(group_id) else group_id


def not_attached(state: dict[str, Any], settings: Settings) -> str:
    attached = ", ".join(label(g, state["names"]) for g in state["attached"]) or "none"
    return (f"{settings.rds_security_group} ({state['ids']['rds_sg_id']}) is not attached to "
            f"RDS instance {state['instance']} (attached: {attached})")


@task(name="check-rds-sg", **AWS_CHECK_OPTS)
def check_rds_sg(ec2, rds, settings: Settings) -> dict[str, Any]:
    """Every SG attached to the RDS instance: 5432 only from the task SG (the configured group
    attached, exactly one rule from the task SG, no CIDR/prefix list/other group anywhere)."""
    name = "rds_sg.5432_only_from_task_sg"
    st = attached_groups(ec2, rds, settings)
    ids = st["ids"]
    expected = f"tcp {PG_PORT} from {ids['task_sg_id']} ({settings.task_security_group}) only"
    covering = [f"{g['group_id']}: {c}" for g in st["groups"] for c in g["analysis"]["covering"]]
    actual = "; ".join(covering) or f"nothing allows {PG_PORT}"
    problems = [] if st["configured_attached"] else [not_attached(st, settings)]
    problems += [f"{label(g['group_id'], st['names'])}: {'; '.join(g['analysis']['problems'])}"
                 for g in st["groups"] if not g["analysis"]["ok"]]
    ok = not problems
    if ok:
        detail = (f"{settings.rds_security_group} ({ids['rds_sg_id']}): 5432 only from the task "
                  f"SG ({len(st['groups'])} group(s) attached to {settings.rds_instance})")
    else:
        fix = ("attach it to the instance (Terraform / modify-db-instance), then plan "
               "`papyrus-ops repair sg`" if not st["configured_attached"]
               else "repair with `papyrus-ops repair sg`")
        detail = "; ".join(problems) + f": {fix}"
    configured = next((g for g in st["groups"] if g["configured"]), None)
    own_rules = (configured["SecurityGroupRules"] if configured
                 else ingress_rules(ec2, ids["rds_sg_id"]))
    own = configured["analysis"] if configured else analyse_rds_ingress(own_rules,
                                                                        ids["task_sg_id"])
    evidence = {"rds_sg_inbound_after": {
        "group_id": ids["rds_sg_id"], "group_name": settings.rds_security_group,
        "task_sg_id": ids["task_sg_id"], "db_instance": settings.rds_instance,
        "attached": st["configured_attached"], "attached_group_ids": st["attached"],
        "analysis": own, "SecurityGroupRules": own_rules,
        "attached_groups": [{k: g[k] for k in ("group_id", "group_name", "configured",
                                                "analysis", "SecurityGroupRules")}
                            for g in st["groups"]]}}
    return result(name, expected, actual, PASS if ok else FAIL, detail, evidence)
