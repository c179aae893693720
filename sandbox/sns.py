"""SNS as AWS answers it where moto is kinder.

CreateTopic on a name that already exists returns the existing topic's ARN (idempotent) — but
only when the request's tags match the topic's: with other tags, SNS refuses with
`InvalidParameter` ("Invalid parameter: Tags Reason: Topic already exists with different
tags"). moto returns the existing topic whatever the tags, so a Terraform-made `papyrus-alerts`
topic with Terraform's tags looked convergeable by `create_topic(Name, Tags)` when it is not.
AWS: SNS API Reference, CreateTopic ("Tags" — and the InvalidParameter error); the message is
the one SNS returns.
"""

from __future__ import annotations

from moto.sns.exceptions import SNSInvalidParameter
from moto.sns.models import SNSBackend, Topic

from sandbox.patches import Patches


def _create_topic(self, name, attributes=None, tags=None):
    existing = self.topics.get(Topic(name, self).arn)
    if existing is not None and tags and dict(tags) != dict(existing._tags or {}):
        raise SNSInvalidParameter(
            "Invalid parameter: Tags Reason: Topic already exists with different tags")
    return _PATCHES.original(SNSBackend, "create_topic")(self, name, attributes, tags)


_PATCHES = Patches((SNSBackend, "create_topic", _create_topic))
install, uninstall = _PATCHES.install, _PATCHES.uninstall
