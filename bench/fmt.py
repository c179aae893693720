"""Formatting for docs/benchmarks.md: numbers, stats() dicts (median with min–max), shares,
goal verdicts and Markdown tables. Pure; used by bench.report and bench.findings."""

from __future__ import annotations


def num(x, digits: int = 1) -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and x != x:  # NaN
        return "–"
    if abs(x) >= 1000 and digits <= 1:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def st(s: dict | None, digits: int = 1, unit: str = "") -> str:
    """median (min–max) from a stats() dict."""
    if not s or not s.get("n"):
        return "–"
    u = f" {unit}" if unit else ""
    if s["n"] == 1 or s["min"] == s["max"]:
        return f"{num(s['median'], digits)}{u}"
    return f"{num(s['median'], digits)}{u} ({num(s['min'], digits)}–{num(s['max'], digits)})"


def pct(x: float | None, digits: int = 0) -> str:
    return "–" if x is None else f"{x * 100:.{digits}f}%"


def met(ok: bool | None) -> str:
    return "–" if ok is None else ("**met**" if ok else "**missed**")


def med(s: dict | None):
    return None if not s or not s.get("n") else s["median"]


def table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)
