"""Papyrus monitoring as desired state: `deployments/<env>/monitoring.toml` → plan → apply.

The resources (all named `papyrus-…`), in the order they are applied:

| resource | what |
|---|---|
| `sns_topic` | the topic alarms and the rule notify, with a policy letting EventBridge publish |
| `s3_bucket` | the ALB access-log bucket: private, SSE-S3, ELB log delivery allowed |
| `target_group` | `ip` target group, HTTP on the container port, health check `/healthz` → 200 |
| `lb_access_logs` | the ALB's `access_logs.s3.*` attributes (only with a configured ALB) |
| `cloudwatch_alarm` | ECS CPU/memory; ALB 5xx and TargetResponseTime (only with an ALB) |
| `event_rule` | ECS Task State Change: STOPPED with exit code ≠ 0, or failed to start |
| `event_target` | the rule → the SNS topic |

`actual.read_actual` reads (Describe/List/Get/Head only), `desired.desired_state` is pure,
`planning.plan` diffs the two into items `{resource, name, action, changes: {field: (actual,
desired)}, desired}` with `action` one of `create`, `update`, `unchanged` or `blocked` (a
difference that cannot be applied in place, or a prerequisite that is missing: `reason` says
which), and `apply.apply_item` converges one item. A value only known once an earlier item is
applied (the new target group's ARN in the ALB alarms' dimensions) is a `{"$ref": name}` in the
plan, shown as "(known after apply)" and resolved from the earlier items' results at apply time.

The configuration (`deployments/<env>/monitoring.toml`) is read by `ground.monitoring_settings`.
Modules: one per resource kind (`notifications`, `accesslogs`, `targets`, `alarms`, `eventrules`
with `event_pattern`, `policies`), `clients`, `actual`, `desired`, `planning`, `apply`, `render`.
The names below are the engine's API.
"""

from tasks.monitoring.actual import read_actual
from tasks.monitoring.apply import apply_item
from tasks.monitoring.clients import Clients, _transient
from tasks.monitoring.desired import desired_state
from tasks.monitoring.planning import KNOWN_AFTER_APPLY, converged, counts, display, plan, resolve
from tasks.monitoring.render import for_evidence, plan_rows, render_plan

__all__ = [
    "KNOWN_AFTER_APPLY", "Clients", "_transient", "apply_item", "converged", "counts",
    "desired_state", "display", "for_evidence", "plan", "plan_rows", "read_actual",
    "render_plan", "resolve",
]
