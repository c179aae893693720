"""How `make test` splits the suite over pytest-xdist workers (`-n 4 --dist loadfile`).

Every worker is a whole session of its own: its own tmp root, Prefect server and sandbox
(tests/conftest.py makes them per process), so workers share nothing but the machine. What must
stay on one worker is what shares session state on purpose:
- a test file: its tests build on one another in definition order (plan, apply, re-plan);
- tests/reliability: its canary sweep, at the end of the session, searches everything the whole
  matrix wrote — in that worker's sandbox, so the matrix runs in one;
- tests/e2e: one `papyrus-ops prefect up --ecs` stack per session (tests/e2e/conftest.py), which
  would otherwise start once on each worker.
xdist's `loadfile` keeps only files together, and its `loadgroup` marks do nothing with pytest 9
(xdist 3.8 renames `item._nodeid`, which pytest 9 no longer reads), so `make_scheduler` gives
xdist a loadfile scheduler whose unit is the group below. The two long groups go first
(`order_items`, in the workers, where the items are collected; `--no-loadscope-reorder` keeps
that order), so neither is what a worker starts last while the other idles. Without xdist
nothing changes.
"""

from __future__ import annotations

# Folders that are one unit each, longest first.
WHOLE = ("tests/e2e", "tests/reliability")

# Files of a WHOLE folder that share nothing with it — neither the canary sandbox (`sb`) nor the
# capture folder the sweep searches — so they are units of their own and the longest group is
# no longer than it must be. tests/reliability/conftest.py fails a test of theirs that asks for
# either (`sweep_free_guard`).
ON_THEIR_OWN = (
    "tests/reliability/test_cli_prefect_server.py",  # the resident server, its own folders
    "tests/reliability/test_properties.py",
    "tests/reliability/test_cli_flow_parameters.py",
    "tests/reliability/test_approval_record.py",
)


def group_of(nodeid: str) -> str:
    """The unit a test goes with: its folder for WHOLE, else its file."""
    path = nodeid.split("::", 1)[0]
    if path in ON_THEIR_OWN:
        return path
    for folder in WHOLE:
        if path.startswith(folder + "/"):
            return folder
    return path


def _rank(item) -> int:
    group = group_of(item.nodeid)
    return WHOLE.index(group) if group in WHOLE else len(WHOLE)


def order_items(config, items) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker
        items.sort(key=_rank)  # stable: inside a group, pytest's own order


def make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class GroupScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return GroupScheduling(config, log)
