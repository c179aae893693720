"""Building blocks of the synthetic history: deterministic identifiers and identities
(`_Gen`), and the shapes one kind of API call is made of (`_Kind`, `_Variant`)."""

from __future__ import annotations

import json
import random
from typing import Any, NamedTuple

# Random identifiers (access keys, principal ids) draw from an alphabet without "Y", so no
# random string can ever spell "papyrus".
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXZ234567"
_DUMPS = json.JSONEncoder(separators=(",", ":")).encode


class _Identity(NamedTuple):
    head: str  # userIdentity JSON up to the creationDate value (or all of it)
    tail: str | None  # the rest after creationDate; None when there is no session
    username: str | None
    access_key_id: str | None
    ip: str
    user_agent: str  # JSON-encoded


class _Variant(NamedTuple):
    params: str  # ',"requestParameters":...,"responseElements":...'
    resources: tuple[tuple[str, str], ...]
    tail: str  # '"readOnly":...,...}' (closes the document)
    read_only: str  # "true" | "false"


class _Kind(NamedTuple):
    source: str
    name: str
    weight: float
    head: str  # '"eventSource":..,"eventName":..,"awsRegion":..,'
    variants: tuple[_Variant, ...]
    identities: tuple[_Identity, ...]


_CLI_UA = _DUMPS("aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0-1018-azure exe/x86_64.ubuntu.22 "
                 "prompt/off")
_BOTO_UA = _DUMPS("Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#6.1.79 md/arch#x86_64 "
                  "lang/python#3.11.8 md/pyimpl#CPython cfg/retry-mode#standard Botocore/1.34.69")
_CONSOLE_UA = _DUMPS("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
                     "(KHTML, like Gecko) Version/17.4 Safari/605.1.15")
_AGENT_UA = _DUMPS("ecs-tasks.amazonaws.com")


class _Gen:
    """Deterministic building blocks for one history."""

    def __init__(self, rng: random.Random, account: str, region: str):
        self.rng = rng
        self.account = account
        self.region = region

    def key(self, prefix: str, n: int = 16) -> str:
        return prefix + "".join(self.rng.choice(_KEY_ALPHABET) for _ in range(n))

    def hex(self, n: int) -> str:
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    def uuid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"

    def public_ip(self) -> str:
        r = self.rng
        return f"{r.choice((34, 35, 44, 52, 54, 203))}.{r.randrange(256)}.{r.randrange(256)}." \
               f"{r.randrange(1, 255)}"

    # -- identities ------------------------------------------------------------------------
    def iam_user(self, name: str) -> _Identity:
        ui = {"type": "IAMUser", "principalId": self.key("AIDA", 17),
              "arn": f"arn:aws:iam::{self.account}:user/{name}", "accountId": self.account,
              "accessKeyId": (ak := self.key("AKIA")), "userName": name}
        ua = self.rng.choice((_CLI_UA, _BOTO_UA))
        return _Identity(_DUMPS(ui), None, name, ak, self.public_ip(), ua)

    def assumed_role(self, role: str, session: str, *, ip: str | None = None,
                     ua: str = _BOTO_UA, invoked_by: str | None = None) -> _Identity:
        role_id = self.key("AROA", 17)
        ak = self.key("ASIA")
        ui: dict[str, Any] = {
            "type": "AssumedRole", "principalId": f"{role_id}:{session}",
            "arn": f"arn:aws:sts::{self.account}:assumed-role/{role}/{session}",
            "accountId": self.account, "accessKeyId": ak,
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "principalId": role_id,
                                  "arn": f"arn:aws:iam::{self.account}:role/{role}",
                                  "accountId": self.account, "userName": role},
                "webIdFederationData": {},
                "attributes": {"creationDate": "@@T@@", "mfaAuthenticated": "false"},
            },
        }
        if invoked_by:
            ui["invokedBy"] = invoked_by
        head, tail = _DUMPS(ui).split("@@T@@")
        return _Identity(head, tail, session, ak, ip or self.public_ip(), ua)

    def web_identity(self, repo: str) -> _Identity:
        subject = f"repo:{repo}:ref:refs/heads/main"
        provider = f"arn:aws:iam::{self.account}:oidc-provider/token.actions.githubusercontent.com"
        ui = {"type": "WebIdentityUser",
              "principalId": f"{provider}:sts.amazonaws.com:{subject}",
              "userName": subject, "identityProvider": provider}
        ua = _DUMPS("aws-sdk-nodejs/2.1551.0 linux/v20.11.1 configure-aws-credentials-for-"
                    "github-actions promise")
        return _Identity(_DUMPS(ui), None, subject, None, self.public_ip(), ua)


def _head(source: str, name: str, region: str) -> str:
    return f'"eventSource":"{source}","eventName":"{name}","awsRegion":"{region}",'


def _variant(gen: _Gen, source: str, read_only: bool, request: Any, response: Any,
             resources: list[tuple[str, str, str | None]], *, category: str = "Management",
             event_type: str = "AwsApiCall") -> _Variant:
    """resources: (ResourceType, ResourceName, ARN or None) as CloudTrail reports them."""
    params = f',"requestParameters":{_DUMPS(request)},"responseElements":{_DUMPS(response)}'
    doc_resources = [{"accountId": gen.account, "type": t, "ARN": arn}
                     for t, _, arn in resources if arn]
    tail = f'"readOnly":{"true" if read_only else "false"},'
    if doc_resources:
        tail += f'"resources":{_DUMPS(doc_resources)},'
    host = f"{source.split('.')[0]}.{gen.region}.amazonaws.com"
    tail += (f'"eventType":"{event_type}","managementEvent":'
             f'{"true" if category == "Management" else "false"},'
             f'"recipientAccountId":"{gen.account}","eventCategory":"{category}",'
             f'"tlsDetails":{{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256",'
             f'"clientProvidedHostHeader":"{host}"}}}}')
    return _Variant(params, tuple((t, n) for t, n, _ in resources), tail,
                    "true" if read_only else "false")
