"""Showing a plan: table rows, the plain-text table, and the evidence JSON."""

from __future__ import annotations

from typing import Any

from tasks.monitoring.planning import counts, display


def _short(value: Any, width: int = 60) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(display(value), sort_keys=True,
                                                           default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def plan_rows(items: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Rows for a table: resource, name, action, and what changes (field: actual → desired)."""
    rows = []
    for i in items:
        if i["action"] == "create":
            detail = ", ".join(sorted(i["changes"]))
        elif i["action"] == "update":
            detail = "; ".join(f"{k}: {_short(a, 40)} → {_short(d, 40)}"
                               for k, (a, d) in sorted(i["changes"].items()))
        elif i["action"] == "blocked":
            detail = i.get("reason", "")
        else:
            detail = ""
        rows.append({"resource": i["resource"], "name": i["name"], "action": i["action"],
                     "changes": detail})
    return rows


def render_plan(items: list[dict[str, Any]], title: str = "monitoring plan") -> str:
    """The plan as a plain-text table (what the console and the flow log show)."""
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col in ("resource", "name", "action", "changes"):
        table.add_column(col, overflow="fold")
    for r in plan_rows(items):
        table.add_row(r["resource"], r["name"], r["action"], r["changes"])
    buf = StringIO()
    Console(file=buf, width=160, color_system=None, force_terminal=False).print(table)
    c = counts(items)
    buf.write(f"{c['create']} to create, {c['update']} to update, {c['unchanged']} unchanged, "
              f"{c['blocked']} blocked\n")
    return buf.getvalue()


def for_evidence(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Plan items as plain JSON: changes as {field: {actual, desired}}, refs shown as such."""
    out = []
    for i in items:
        row = {k: display(v) for k, v in i.items() if k not in ("changes", "desired")}
        row["changes"] = {k: {"actual": display(a), "desired": display(d)}
                          for k, (a, d) in i.get("changes", {}).items()}
        row["desired"] = display(i.get("desired"))
        out.append(row)
    return out
