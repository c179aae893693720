"""How `make test` splits the suite over pytest-xdist workers (`-n 2 --dist loadgroup`).

Every worker is a whole session of its own: its own tmp root, Prefect server and sandbox
(tests/conftest.py makes them per process), so workers share nothing but the machine. What must
stay on one worker is what shares session state on purpose:
- a test file: its tests build on one another in definition order (plan, apply, re-plan);
- tests/reliability: its canary sweep, at the end of the session, searches everything the whole
  matrix wrote — in that worker's sandbox, so the matrix runs in one;
- tests/e2e: one `papyrus-ops prefect up --ecs` stack per session (tests/e2e/conftest.py), which
  would otherwise start once on each worker.
The two long groups go first (`--no-loadscope-reorder` keeps this order), so neither is what a
worker starts last while the other idles. Without xdist nothing changes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Directories that are one group each, longest first.
WHOLE = ("tests/e2e", "tests/reliability")


def group_of(path: Path) -> str:
    rel = Path(path).resolve().relative_to(ROOT).as_posix()
    for folder in WHOLE:
        if rel.startswith(folder + "/"):
            return folder
    return rel


def assign_groups(config, items) -> None:
    if getattr(config.option, "dist", "no") != "loadgroup":
        return
    rank = {folder: i for i, folder in enumerate(WHOLE)}
    items.sort(key=lambda item: rank.get(group_of(item.path), len(WHOLE)))  # stable
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group_of(item.path)))
