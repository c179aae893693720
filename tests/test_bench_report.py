"""bench/: a report rebuilt on a machine with only some raw results keeps the other sections."""

from __future__ import annotations

from bench.in_place import keep_sections

OLD = """# Benchmarks

## Goals

| § | goal | measured |  |
|---|---|---|---|
| 1 | fast verdict | 0.7 s | **met** |
| 2 | archive | 1.3× | **missed** |
| 6 | CLI tax | 0.56 s | **met** |

## 1. Verdict

old verdict table
| 1 | a row of a section's own table, not a goal |

## 2. Archive

old archive

## 6. Start-up

old start-up

## Findings and proposals

### 1. Verdict

old verdict finding

### 2. Archive

old archive finding
"""

NEW = """# Benchmarks

## Goals

| § | goal | measured |  |
|---|---|---|---|
| 2 | archive | 1.1× | **missed** |

## 1. Verdict

Not run yet.

## 2. Archive

new archive

## Findings and proposals

### 2. Archive

new archive finding
"""


def test_sections_without_raw_results_stay_as_the_report_had_them():
    out = keep_sections(OLD, NEW, ["1", "6"])
    assert "| 2 | archive | 1.1× | **missed** |" in out and "1.3×" not in out
    goals = out.split("## 1. Verdict")[0]
    assert goals.index("| 1 | fast verdict") < goals.index("| 2 | archive") < goals.index(
        "| 6 | CLI tax")
    assert "a row of a section's own table" not in goals
    assert "old verdict table" in out and "Not run yet." not in out
    assert "new archive" in out and "old archive\n" not in out
    # §6, absent from the new report, goes back before the findings, in § order.
    assert out.index("## 2. Archive") < out.index("## 6. Start-up") < out.index("## Findings")
    findings = out.split("## Findings and proposals")[1]
    assert findings.index("old verdict finding") < findings.index("new archive finding")
    assert "old archive finding" not in out


def test_nothing_to_keep_leaves_the_new_report():
    assert keep_sections(OLD, NEW, []) == NEW
