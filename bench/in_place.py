"""One section of docs/benchmarks.md rewritten where it stands, with its goal rows: how a benchmark
run alone (`bench.__main__.IN_PLACE`) updates the report without the others' raw results."""

from __future__ import annotations

from pathlib import Path

from bench.fmt import table


def _section_no(row: str) -> float:
    try:
        return float(row.split("|")[1].strip())
    except (IndexError, ValueError):
        return float("inf")


def update_in_place(doc: Path, number: str, heading: str, section_text: str,
                    goal_rows: list[list]) -> Path:
    """Replace section `heading` (its text `section_text`) and the goal rows of § `number` in
    `doc`, leaving every other section as it is: a benchmark run alone rewrites only its own
    part (the raw results of the others may not be on this machine). A new section goes
    before "## Findings"."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n\n## Goals\n\n"
    lines = [ln for ln in text.splitlines() if not ln.startswith(f"| {number} |")]
    new_rows = table(["§"], [[" | ".join(map(str, r))] for r in goal_rows]).splitlines()[2:]
    # The goals table ends at its first line after the header that is not a row.
    try:
        start = next(i for i, ln in enumerate(lines) if ln.startswith("| § |"))
        end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
        # In § order: before the first row of a later section.
        later = [i for i in range(start + 2, end)
                 if _section_no(lines[i]) > _section_no(f"| {number} |")]
        at = later[0] if later else end
        lines[at:at] = new_rows
    except StopIteration:
        pass
    text = "\n".join(lines) + "\n"
    if heading in text:
        head, rest = text.split(heading, 1)
        nxt = rest.find("\n## ")
        text = head + section_text + (rest[nxt + 1:] if nxt >= 0 else "")
    else:
        i = text.find("\n## Findings")
        text = (text[:i + 1] + section_text + "\n" + text[i + 1:] if i >= 0
                else text + "\n" + section_text)
    doc.write_text(text)
    return doc
