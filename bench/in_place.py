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


def _block(lines: list[str], start: str, stops: tuple[str, ...]) -> tuple[int, int] | None:
    """[i, j) of the lines from the one starting with `start` to the next one starting with
    any of `stops` (or the end)."""
    i = next((k for k, ln in enumerate(lines) if ln.startswith(start)), None)
    if i is None:
        return None
    j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith(stops)), len(lines))
    return i, j


def _number(line: str) -> float | None:
    """A heading's § number ("## 3. Service…" → 3.0); None for an unnumbered one."""
    try:
        return float(line.lstrip("#").split(".", 1)[0].strip())
    except ValueError:
        return None


def keep_sections(old: str, new: str, numbers) -> str:
    """`new` (a report rebuilt from the raw results on this machine) with the old report's
    §`numbers` put back as they stood: the section, its goal rows and its findings. For what
    this run has no raw results for (they are git-ignored, so another machine's are not here)
    and for the benchmarks that update their own section in place (`IN_PLACE`)."""
    o, n = old.splitlines(), new.splitlines()
    findings = "## Findings"
    for num in sorted(numbers, key=float):
        # Goal rows, before the first row of a later section.
        goals = _block(o, "| § |", ("",)) if any(ln.startswith("| § |") for ln in o) else None
        goals = goals and (goals[0], next((k for k in range(goals[0], len(o))
                                           if not o[k].startswith("|")), len(o)))
        rows = [ln for ln in o[goals[0]:goals[1]] if ln.startswith(f"| {num} |")] if goals else []
        head = next((k for k, ln in enumerate(n) if ln.startswith("| § |")), None)
        if head is not None:
            end = next((k for k in range(head, len(n)) if not n[k].startswith("|")), len(n))
            n = n[:head] + [ln for ln in n[head:end] if not ln.startswith(f"| {num} |")] + n[end:]
        if rows and head is not None:
            end = next((k for k in range(head, len(n)) if not n[k].startswith("|")), len(n))
            later = [k for k in range(head + 2, end) if _section_no(n[k]) > float(num)]
            at = later[0] if later else end
            n[at:at] = rows
        # The section, and its findings subsection (inside "## Findings").
        for prefix, stops in ((f"## {num}. ", ("## ",)), (f"### {num}. ", ("## ", "### "))):
            inside = prefix.startswith("###")
            fo = _block(o, findings, ("# ",)) if inside else (0, len(o))
            fn = _block(n, findings, ("# ",)) if inside else (0, len(n))
            if fo is None or fn is None:
                continue
            src = _block(o[fo[0]:fo[1]], prefix, stops)
            if src is None:
                continue
            text = o[fo[0] + src[0]:fo[0] + src[1]]
            dst = _block(n[fn[0]:fn[1]], prefix, stops)
            if dst is not None:
                n[fn[0] + dst[0]:fn[0] + dst[1]] = text
                continue
            level = "### " if inside else "## "
            later = [k for k in range(fn[0], fn[1]) if n[k].startswith(level)
                     and not n[k].startswith(level + "#")
                     and (_number(n[k]) or 0) > float(num)
                     and (inside or k < (_block(n, findings, ("# ",)) or (len(n),))[0])]
            at = later[0] if later else (fn[1] if inside else
                                         (_block(n, findings, ("# ",)) or (len(n),))[0])
            n[at:at] = text
    return "\n".join(n) + "\n"
