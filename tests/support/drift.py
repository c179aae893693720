"""Drift for the preflight/repair tests: injected through plain boto3 (like an operator's console
click), every change undone by `restore()`."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

from ground.settings import ROOT


def _rule_key(r: dict) -> tuple:
    src = (r.get("CidrIpv4") or r.get("CidrIpv6") or r.get("PrefixListId")
           or (r.get("ReferencedGroupInfo") or {}).get("GroupId"))
    return (r["IpProtocol"], r.get("FromPort"), r.get("ToPort"), src)


def _permission(key: tuple) -> dict:
    proto, lo, hi, src = key
    perm: dict = {"IpProtocol": proto}
    if proto != "-1":
        perm.update(FromPort=lo, ToPort=hi)
    if src.startswith("sg-"):
        perm["UserIdGroupPairs"] = [{"GroupId": src}]
    elif src.startswith("pl-"):
        perm["PrefixListIds"] = [{"PrefixListId": src}]
    elif ":" in src:
        perm["Ipv6Ranges"] = [{"CidrIpv6": src}]
    else:
        perm["IpRanges"] = [{"CidrIp": src}]
    return perm


class Drift:
    def __init__(self, sandbox, tmp_path: Path):
        self.sb, self.s, self.tmp = sandbox, sandbox.settings, tmp_path
        self.sm, self.rds = sandbox.client("secretsmanager"), sandbox.client("rds")
        self.ec2, self.ecs, self.s3 = (sandbox.client(x) for x in ("ec2", "ecs", "s3"))
        self.rds_sg, self.task_sg = sandbox.seeded.rds_sg_id, sandbox.seeded.task_sg_id
        self._undo: list = []
        self._secret: str | None = None
        self._rules: list[tuple] | None = None

    # -- the secret ---------------------------------------------------------------------------
    def secret_doc(self) -> dict:
        return json.loads(self.sm.get_secret_value(SecretId=self.s.db_secret_id)["SecretString"])

    def secret(self, **changes) -> dict:
        if self._secret is None:
            self._secret = self.sm.get_secret_value(SecretId=self.s.db_secret_id)["SecretString"]
            self._undo.append(lambda: self.sm.put_secret_value(
                SecretId=self.s.db_secret_id, SecretString=self._secret))
        doc = self.secret_doc()
        doc.update(changes)
        self.sm.put_secret_value(SecretId=self.s.db_secret_id, SecretString=json.dumps(doc))
        return doc

    # -- RDS ----------------------------------------------------------------------------------
    def force_ssl(self, value: str) -> None:
        def set_(v):
            self.rds.modify_db_parameter_group(
                DBParameterGroupName=self.s.parameter_group,
                Parameters=[{"ParameterName": "rds.force_ssl", "ParameterValue": v,
                             "ApplyMethod": "immediate"}])
        set_(value)
        self._undo.append(lambda: set_("1"))

    def last_deploy(self, **fields) -> None:
        from tasks import state

        before = state.read_last_deploy(self.s3, self.s)
        state.record_deploy(self.s3, self.s, rds=None, **fields)

        def undo():
            if before is None:
                state.clear_last_deploy(self.s3, self.s)
            else:
                state.record_deploy(self.s3, self.s, rds=None, **before)
        self._undo.append(undo)

    def no_last_deploy(self) -> None:
        from tasks import state

        before = state.read_last_deploy(self.s3, self.s)
        if before is not None:
            state.clear_last_deploy(self.s3, self.s)
            self._undo.append(lambda: state.record_deploy(self.s3, self.s, rds=None, **before))

    # -- the RDS security group ----------------------------------------------------------------
    def inbound(self) -> list[dict]:
        rules = self.ec2.describe_security_group_rules(Filters=[
            {"Name": "group-id", "Values": [self.rds_sg]}])["SecurityGroupRules"]
        return [r for r in rules if not r["IsEgress"]]

    def _snapshot_rules(self) -> None:
        if self._rules is None:
            self._rules = [_rule_key(r) for r in self.inbound()]
            self._undo.append(self._restore_rules)

    def _restore_rules(self) -> None:
        want = Counter(self._rules)
        have: Counter = Counter()
        extra = []
        for r in self.inbound():
            k = _rule_key(r)
            have[k] += 1
            if have[k] > want[k]:
                extra.append(r["SecurityGroupRuleId"])
        if extra:
            self.ec2.revoke_security_group_ingress(GroupId=self.rds_sg,
                                                   SecurityGroupRuleIds=extra)
        for k, n in want.items():
            for _ in range(n - min(have[k], n)):
                self.ec2.authorize_security_group_ingress(GroupId=self.rds_sg,
                                                          IpPermissions=[_permission(k)])

    def sg_allow(self, proto: str = "tcp", lo: int = 5432, hi: int = 5432, **source) -> None:
        """source: cidr=..., cidr6=..., group=..."""
        self._snapshot_rules()
        src = source.get("cidr") or source.get("cidr6") or source.get("group")
        self.ec2.authorize_security_group_ingress(GroupId=self.rds_sg,
                                                  IpPermissions=[_permission((proto, lo, hi,
                                                                              src))])

    def sg_revoke_task_rule(self) -> None:
        self._snapshot_rules()
        ids = [r["SecurityGroupRuleId"] for r in self.inbound()
               if (r.get("ReferencedGroupInfo") or {}).get("GroupId") == self.task_sg]
        self.ec2.revoke_security_group_ingress(GroupId=self.rds_sg, SecurityGroupRuleIds=ids)

    def other_sg(self) -> str:
        name = "papyrus-legacy-sg"
        found = self.ec2.describe_security_groups(Filters=[
            {"Name": "group-name", "Values": [name]}])["SecurityGroups"]
        if found:
            return found[0]["GroupId"]
        return self.ec2.create_security_group(GroupName=name, Description="legacy",
                                              VpcId=self.sb.seeded.vpc_id)["GroupId"]

    # -- ECS ----------------------------------------------------------------------------------
    def exec_enabled(self) -> bool:
        return bool(self.service().get("enableExecuteCommand"))

    def service(self) -> dict:
        return self.ecs.describe_services(cluster=self.s.cluster,
                                          services=[self.s.service])["services"][0]

    def exec_off(self) -> None:
        self.ecs.update_service(cluster=self.s.cluster, service=self.s.service,
                                enableExecuteCommand=False)
        self._undo.append(lambda: self.ecs.update_service(
            cluster=self.s.cluster, service=self.s.service, enableExecuteCommand=True))

    # -- the service source ---------------------------------------------------------------------
    def service_without_dbcheck(self) -> Path:
        """A copy of service/ whose create_app() no longer registers the dbcheck blueprint."""
        dest = self.tmp / "service-no-dbcheck"
        shutil.copytree(ROOT / "service" / "papyrus", dest / "papyrus",
                        ignore=shutil.ignore_patterns("__pycache__"))
        init = dest / "papyrus" / "__init__.py"
        text = init.read_text()
        assert "app.register_blueprint(dbcheck.bp)" in text
        init.write_text(text.replace("    app.register_blueprint(dbcheck.bp)\n", ""))
        return dest

    def restore(self) -> None:
        errors = []
        for undo in reversed(self._undo):
            try:
                undo()
            except Exception as e:  # noqa: BLE001 - restore everything we can
                errors.append(e)
        self._undo.clear()
        if errors:
            raise errors[0]


class Realism:
    """Realism scenarios: the account as Terraform or a person leaves it, made with plain boto3
    calls (docs/sandbox.md, "Realism scenarios"); `restore()` puts the sandbox back.

    Security groups it creates are tagged like Terraform's; the instance's groups are changed
    with ModifyDBInstance(VpcSecurityGroupIds=..., ApplyImmediately=True), as `terraform apply`
    does for `aws_db_instance.vpc_security_group_ids`.
    """

    TAGS = [{"Key": "ManagedBy", "Value": "terraform"}, {"Key": "Project", "Value": "papyrus"}]

    def __init__(self, sandbox):
        self.sb, self.s = sandbox, sandbox.settings
        self.ec2, self.rds, self.sm = (sandbox.client(x) for x in ("ec2", "rds", "secretsmanager"))
        self._groups: list[str] = []  # created here, deleted (newest first) on restore
        self._instance_groups: list[str] | None = None
        self._secret: str | None = None
        self._sql_undo: list[tuple[str, str]] = []

    # -- security groups ------------------------------------------------------------------------
    def instance_groups(self) -> list[str]:
        inst = self.rds.describe_db_instances(DBInstanceIdentifier=self.s.rds_instance)
        return [g["VpcSecurityGroupId"] for g in inst["DBInstances"][0]["VpcSecurityGroups"]]

    def group(self, name: str, *ingress: dict) -> str:
        """aws_security_group + aws_vpc_security_group_ingress_rule(s) in the Papyrus VPC."""
        gid = self.ec2.create_security_group(
            GroupName=name, Description=f"{name} (terraform)", VpcId=self.sb.seeded.vpc_id,
            TagSpecifications=[{"ResourceType": "security-group",
                                "Tags": [{"Key": "Name", "Value": name}, *self.TAGS]}])["GroupId"]
        self._groups.append(gid)
        if ingress:
            self.ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=list(ingress))
        return gid

    def set_instance_groups(self, group_ids: list[str]) -> None:
        if self._instance_groups is None:
            self._instance_groups = self.instance_groups()
        self.rds.modify_db_instance(DBInstanceIdentifier=self.s.rds_instance,
                                    VpcSecurityGroupIds=group_ids, ApplyImmediately=True)
        assert self.instance_groups() == group_ids, "ModifyDBInstance not honoured"

    def attach(self, group_id: str) -> None:
        self.set_instance_groups([*self.instance_groups(), group_id])

    @staticmethod
    def pg_from(cidr: str | None = None, group: str | None = None, lo: int = 5432,
                hi: int = 5432, proto: str = "tcp") -> dict:
        perm: dict = {"IpProtocol": proto}
        if proto != "-1":
            perm.update(FromPort=lo, ToPort=hi)
        if group:
            perm["UserIdGroupPairs"] = [{"GroupId": group}]
        elif ":" in (cidr or ""):
            perm["Ipv6Ranges"] = [{"CidrIpv6": cidr}]
        else:
            perm["IpRanges"] = [{"CidrIp": cidr}]
        return perm

    def rules(self, group_id: str) -> list[dict]:
        return [r for r in self.ec2.describe_security_group_rules(Filters=[
            {"Name": "group-id", "Values": [group_id]}])["SecurityGroupRules"]
            if not r["IsEgress"]]

    # -- the secret and PostgreSQL roles -----------------------------------------------------
    def put_secret(self, doc: dict) -> None:
        if self._secret is None:
            self._secret = self.sm.get_secret_value(SecretId=self.s.db_secret_id)["SecretString"]
        self.sm.put_secret_value(SecretId=self.s.db_secret_id, SecretString=json.dumps(doc))

    def secret_doc(self) -> dict:
        return json.loads(self.sm.get_secret_value(SecretId=self.s.db_secret_id)["SecretString"])

    def secret_versions(self) -> list[dict]:
        """Every stored version's JSON, oldest first (deprecated versions included)."""
        out = []
        resp = self.sm.list_secret_version_ids(SecretId=self.s.db_secret_id,
                                               IncludeDeprecated=True)
        for v in sorted(resp["Versions"], key=lambda v: v["CreatedDate"]):
            text = self.sm.get_secret_value(SecretId=self.s.db_secret_id,
                                            VersionId=v["VersionId"])["SecretString"]
            out.append(json.loads(text))
        return out

    def app_role(self, name: str, password: str) -> None:
        """A dedicated login role, not the master user, with what the service needs on the
        `papyrus` database: CONNECT, USAGE on schema public, INSERT/SELECT on skus (the
        /dbcheck INSERT) when the schema is there. The password travels on psql's stdin only."""
        pg, db = self.sb.pg, self.sb.pg.dbname
        pw = password.replace("'", "''")
        pg.psql_admin("SET log_min_error_statement = panic; SET log_statement = 'none';\n"
                      f"CREATE ROLE {name} LOGIN PASSWORD '{pw}'")
        self._sql_undo.append(("postgres", f"DROP ROLE IF EXISTS {name}"))
        self._sql_undo.append((db, f"DROP OWNED BY {name}"))  # also its database grants
        pg.psql_admin(f"GRANT CONNECT ON DATABASE {db} TO {name}; "
                      f"GRANT USAGE ON SCHEMA public TO {name}; "
                      "DO $$ BEGIN IF to_regclass('public.skus') IS NOT NULL THEN "
                      f"GRANT SELECT, INSERT ON public.skus TO {name}; "
                      f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {name}; "
                      "END IF; END $$", dbname=db)

    def restore(self) -> None:
        errors: list[Exception] = []

        def attempt(fn, *a, **kw):
            try:
                fn(*a, **kw)
            except Exception as e:  # noqa: BLE001 - restore everything we can
                errors.append(e)

        if self._secret is not None:
            attempt(self.sm.put_secret_value, SecretId=self.s.db_secret_id,
                    SecretString=self._secret)
        if self._instance_groups is not None:
            attempt(self.rds.modify_db_instance, DBInstanceIdentifier=self.s.rds_instance,
                    VpcSecurityGroupIds=self._instance_groups, ApplyImmediately=True)
        for gid in reversed(self._groups):
            attempt(self.ec2.delete_security_group, GroupId=gid)
        for db, sql in reversed(self._sql_undo):
            attempt(self.sb.pg.psql_admin, sql, dbname=db)
        self._groups, self._sql_undo = [], []
        self._instance_groups = self._secret = None
        if errors:
            raise errors[0]
