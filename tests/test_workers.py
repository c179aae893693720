"""How `make test` splits the suite over xdist workers (tests/support/workers.py): a file stays
whole, tests/e2e and tests/reliability each stay whole, and the long groups are handed out first."""

from __future__ import annotations

import re
from types import SimpleNamespace

from tests.support.workers import group_of, make_scheduler, order_items


def test_a_file_is_one_unit_and_two_folders_are_one_unit_each():
    assert group_of("tests/deploy/test_image_ref.py::test_accepted_forms[papyrus@sha256:ab]") \
        == "tests/deploy/test_image_ref.py"
    assert group_of("service/tests/test_papyrus_db.py::test_x") \
        == "service/tests/test_papyrus_db.py"
    assert group_of("tests/e2e/test_ecs_worker.py::test_a") == "tests/e2e"
    assert group_of("tests/reliability/test_deploy_lease.py::test_b[1]") == "tests/reliability"
    assert group_of("tests/e2e_other/test_x.py::t") == "tests/e2e_other/test_x.py"
    # a reliability file that feeds nothing to the canary sweep is a unit of its own
    assert group_of("tests/reliability/test_cli_prefect_server.py::test_c") \
        == "tests/reliability/test_cli_prefect_server.py"


def test_the_files_on_their_own_exist_and_leave_the_sweep_alone():
    from pathlib import Path

    from tests.support.workers import ON_THEIR_OWN

    root = Path(__file__).resolve().parents[1]
    for path in ON_THEIR_OWN:
        text = (root / path).read_text()
        assert "capture_dir" not in text and not re.search(r"\bsb\b", text), path


class _Config:
    def __init__(self, dist: str, worker: bool = False):
        self._dist = dist
        if worker:
            self.workerinput = {}
        self.option = SimpleNamespace(loadscopereorder=False, maxschedchunk=None)

    def getvalue(self, name):
        return {"dist": self._dist, "tx": ["2*popen"]}.get(name)  # what `-n 2` sets


def test_the_scheduler_groups_by_our_unit_only_for_loadfile():
    assert make_scheduler(_Config("load"), None) is None
    sched = make_scheduler(_Config("loadfile"), None)
    assert sched._split_scope("tests/e2e/test_approval_ui.py::test_x") == "tests/e2e"
    assert sched._split_scope("tests/cloudtrail/test_cloudtrail_core.py::test_y") \
        == "tests/cloudtrail/test_cloudtrail_core.py"


def test_workers_hand_out_e2e_then_reliability_first_and_keep_pytest_order_inside():
    items = [SimpleNamespace(nodeid=n) for n in (
        "tests/alerts/test_alerts.py::a", "tests/reliability/test_r.py::r1",
        "tests/e2e/test_e.py::e1", "tests/reliability/test_r.py::r2", "tests/e2e/test_e.py::e2",
        "tests/zz/test_z.py::z")]
    in_process = list(items)
    order_items(_Config("no"), in_process)
    assert in_process == items  # not a worker: pytest's own order
    order_items(_Config("no", worker=True), items)
    assert [i.nodeid.split("::")[1] for i in items] == ["e1", "e2", "r1", "r2", "a", "z"]
