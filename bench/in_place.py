"""Parts of docs/benchmarks.md rewritten where they stand, with their goal rows.

* `update_in_place` — how a benchmark run alone (`report.IN_PLACE`) updates its own section
  without the others' raw results;
* `keep_sections` — how a rebuilt report keeps the sections it has no raw results for.

Both go through the same three edits: a §'s rows of the goals table (and only that table:
other tables have rows that start with a number too, such as §3's connection counts), a
section by its heading, and a findings subsection.
"""

from __future__ import annotations

from pathlib import Path

from bench.fmt import table

FINDINGS = "## Findings"


def _section_no(row: str) -> float:
    try:
        return float(row.split("|")[1].strip())
    except (IndexError, ValueError):
        return float("inf")


def _heading_no(line: str) -> float | None:
    """A heading's § number ("## 3. Service…" → 3.0); None for an unnumbered one."""
    try:
        return float(line.lstrip("#").split(".", 1)[0].strip())
    except ValueError:
        return None


def _goals(lines: list[str]) -> tuple[int, int] | None:
    """[header, end) of the goals table: from "| § |" to its first line that is not a row."""
    start = next((i for i, ln in enumerate(lines) if ln.startswith("| § |")), None)
    if start is None:
        return None
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return start, end


def goal_rows_of(lines: list[str], number: str) -> list[str]:
    g = _goals(lines)
    return [ln for ln in lines[g[0]:g[1]] if ln.startswith(f"| {number} |")] if g else []


def _put_rows(lines: list[str], number: str, rows: list[str]) -> list[str]:
    """The goals table with § `number`'s rows replaced by `rows`, in § order."""
    g = _goals(lines)
    if g is None:
        return lines
    start, end = g
    body = [ln for ln in lines[start + 2:end] if not ln.startswith(f"| {number} |")]
    later = [i for i, ln in enumerate(body) if _section_no(ln) > float(number)]
    at = later[0] if later else len(body)
    return lines[:start + 2] + body[:at] + rows + body[at:] + lines[end:]


def _block(lines: list[str], prefix: str, stops: tuple[str, ...],
           lo: int = 0, hi: int | None = None) -> tuple[int, int] | None:
    """[i, j) in lines[lo:hi] from the line starting with `prefix` to the next one starting with
    any of `stops` (or hi)."""
    hi = len(lines) if hi is None else hi
    i = next((k for k in range(lo, hi) if lines[k].startswith(prefix)), None)
    if i is None:
        return None
    return i, next((k for k in range(i + 1, hi) if lines[k].startswith(stops)), hi)


def _put_block(lines: list[str], prefix: str, block: list[str], subsection: bool) -> list[str]:
    """Replace the section (or, subsection=True, the findings subsection) whose heading starts
    with `prefix` by `block`; a missing one goes before the first later-numbered one, else at
    the end of its part (sections: before the findings; subsections: the findings' end)."""
    level = "### " if subsection else "## "
    stops = ("## ", "### ") if subsection else ("## ",)
    findings = _block(lines, FINDINGS, ("# ",))
    if subsection and findings is None:
        return lines
    lo, hi = (findings if subsection else (0, findings[0] if findings else len(lines)))
    at = _block(lines, prefix, stops, lo, hi)
    if at is not None:
        return lines[:at[0]] + block + lines[at[1]:]
    number = _heading_no(prefix)
    later = [k for k in range(lo, hi) if lines[k].startswith(level)
             and not lines[k].startswith(level + "#") and (_heading_no(lines[k]) or 0) > number]
    k = later[0] if later else hi
    return lines[:k] + block + lines[k:]


def update_in_place(doc: Path, number: str, heading: str, section_text: str,
                    goal_rows: list[list]) -> Path:
    """Replace section `heading` (its text `section_text`) and the goal rows of § `number` in
    `doc`, leaving every other section as it is: a benchmark run alone rewrites only its own
    part (the raw results of the others may not be on this machine). A new section goes
    before "## Findings"."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n\n## Goals\n\n"
    rows = table(["§"], [[" | ".join(map(str, r))] for r in goal_rows]).splitlines()[2:]
    lines = _put_rows(text.splitlines(), number, rows)
    lines = _put_block(lines, heading, section_text.rstrip("\n").split("\n") + [""], False)
    doc.write_text("\n".join(lines) + "\n")
    return doc


def keep_sections(old: str, new: str, numbers) -> str:
    """`new` (a report rebuilt from the raw results on this machine) with the old report's
    §`numbers` put back as they stood: the section, its goal rows and its findings. For what
    this run has no raw results for (they are git-ignored, so another machine's are not here)
    and for the benchmarks that update their own section in place (`report.IN_PLACE`)."""
    o, n = old.splitlines(), new.splitlines()
    old_findings = _block(o, FINDINGS, ("# ",))
    for num in sorted(numbers, key=float):
        n = _put_rows(n, num, goal_rows_of(o, num))
        section = _block(o, f"## {num}. ", ("## ",))
        if section is not None:
            n = _put_block(n, f"## {num}. ", o[section[0]:section[1]], False)
        sub = old_findings and _block(o, f"### {num}. ", ("## ", "### "), *old_findings)
        if sub:
            n = _put_block(n, f"### {num}. ", o[sub[0]:sub[1]], True)
    return "\n".join(n) + "\n"
