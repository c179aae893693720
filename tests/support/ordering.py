"""Run the test files in another order, to show that no file depends on another having run first:

    pytest -p tests.support.ordering --order=reverse ...
    pytest -p tests.support.ordering --order=shuffle:SEED ...

`reverse` runs the files last to first, `shuffle:SEED` in a seeded random order. Inside a file the
tests keep their order (pytest's definition order, which some scenario modules build on: plan,
then apply, then re-plan), so module fixtures are set up once. Opt-in only: without the plugin
(or with --order=collected) the order is pytest's own.
"""

from __future__ import annotations

import random


def pytest_addoption(parser):
    parser.addoption("--order", default="collected",
                     help="collected (default), reverse, or shuffle:SEED (of the test files)")


def pytest_collection_modifyitems(config, items):
    order = config.getoption("--order")
    if order == "collected":
        return
    files: dict[str, list] = {}
    for item in items:
        files.setdefault(str(item.path), []).append(item)
    groups = list(files.values())
    if order == "reverse":
        groups.reverse()
    else:
        kind, _, seed = order.partition(":")
        if kind != "shuffle" or not seed:
            raise ValueError(f"--order: expected collected, reverse or shuffle:SEED, got {order!r}")
        random.Random(seed).shuffle(groups)
    items[:] = [item for group in groups for item in group]


def pytest_report_header(config):
    order = config.getoption("--order")
    return None if order == "collected" else f"test file order: {order}"
