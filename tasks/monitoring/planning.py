"""The plan: desired vs actual, one item per resource (`create`, `update`, `unchanged` or
`blocked`), and `{"$ref": name}` values only known once an earlier item is applied."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.monitoring import accesslogs, alarms, eventrules, notifications, targets

ACTIONS = ("create", "update", "unchanged", "blocked")
ORDER = (notifications.RESOURCE, accesslogs.BUCKET, targets.RESOURCE, accesslogs.LB_ATTRIBUTES,
         alarms.RESOURCE, eventrules.RULE, eventrules.TARGET)
KNOWN_AFTER_APPLY = "(known after apply)"


def _has_ref(value: Any) -> bool:
    if isinstance(value, dict):
        return "$ref" in value or any(_has_ref(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_ref(v) for v in value)
    return False


def resolve(value: Any, refs: dict[str, Any]) -> Any:
    """Replace `{"$ref": key}` by `refs[key]`; a missing ref is an error."""
    if isinstance(value, dict):
        if "$ref" in value:
            if not refs.get(value["$ref"]):
                raise KeyError(f"{value['$ref']} is not known yet")
            return refs[value["$ref"]]
        return {k: resolve(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, refs) for v in value]
    return value


def display(value: Any) -> Any:
    """A value for people: refs become "(known after apply)"."""
    if isinstance(value, dict):
        if "$ref" in value:
            return KNOWN_AFTER_APPLY
        return {k: display(v) for k, v in value.items()}
    if isinstance(value, list):
        return [display(v) for v in value]
    return value


def _diff(actual: dict[str, Any], desired: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (actual.get(k), v) for k, v in desired.items()
            if _has_ref(v) or actual.get(k) != v}


@task(name="monitoring-plan", cache_policy=NO_CACHE)
def plan(desired: dict[str, Any], actual: dict[str, Any]) -> list[dict[str, Any]]:
    """One item per desired resource: create, update, unchanged or blocked (with `reason`)."""
    items = []
    ctx, resources = actual["context"], actual["resources"]
    for d in desired["items"]:
        key = f"{d['resource']}/{d['name']}"
        current = resources.get(key)
        item = {"resource": d["resource"], "name": d["name"], **{
            k: v for k, v in d.items() if k not in ("resource", "name")}}
        if isinstance(current, dict) and "blocked" in current:
            item.update(action="blocked", changes={}, reason=current["blocked"])
        elif current is None:
            item.update(action="create", changes={
                k: (None, v) for k, v in d["desired"].items() if v not in (None, [], "")})
        else:
            changes = _diff(current, d["desired"])
            item.update(action="update" if changes else "unchanged", changes=changes)
        if d["resource"] == targets.RESOURCE:
            if not ctx.get("vpc_id"):
                item.update(action="blocked", reason="the VPC to create it in was not found")
            elif item["action"] == "update":
                fixed = sorted(set(item["changes"]) & set(targets.IMMUTABLE))
                if fixed:
                    item.update(action="blocked", reason=(
                        f"{', '.join(fixed)} cannot be changed in place: replace the target "
                        "group by hand (detach it from listeners and the service first)"))
        items.append(item)
    order = {r: i for i, r in enumerate(ORDER)}
    items.sort(key=lambda i: order[i["resource"]])  # stable: config order within a resource
    return items


def counts(items: list[dict[str, Any]]) -> dict[str, int]:
    return {a: sum(1 for i in items if i["action"] == a) for a in ACTIONS}


def converged(items: list[dict[str, Any]]) -> bool:
    return all(i["action"] == "unchanged" for i in items)
