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


def test_an_in_place_update_touches_only_its_goal_rows(tmp_path):
    """§3's table has rows for 8 connections ("| 8 | /healthz …"): updating §8 in place must
    not take them for §8's goal rows (it did, and §3 lost them)."""
    from bench.in_place import update_in_place

    doc = tmp_path / "benchmarks.md"
    doc.write_text(OLD.replace("old verdict table", "| 8 | /healthz | 2,415 |")
                   .replace("| 6 | CLI tax", "| 8 | suite | 12:49 | **missed** |\n| 6 | CLI tax"))
    update_in_place(doc, "8", "## 8. The suite", "## 8. The suite\n\nnew suite\n",
                    [["8", "suite", "8:05", "**missed**"]])
    out = doc.read_text()
    assert "| 8 | /healthz | 2,415 |" in out
    assert "12:49" not in out and "| 8 | suite | 8:05 | **missed** |" in out
    assert out.index("## 6. Start-up") < out.index("## 8. The suite") < out.index("## Findings")
