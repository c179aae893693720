"""Run the suite in another order, to show that no test depends on running before another:

    pytest -p tests.support.ordering --order=reverse ...
    pytest -p tests.support.ordering --order=shuffle:SEED ...

`reverse` reverses the collected tests; `shuffle:SEED` shuffles the test files, then the tests in
each file (a file's tests stay together, so module fixtures are not set up again and again).
Opt-in only: without the plugin (or with --order=collected) the order is pytest's own.
"""

from __future__ import annotations

import random


def pytest_addoption(parser):
    parser.addoption("--order", default="collected",
                     help="collected (default), reverse, or shuffle:SEED")


def pytest_collection_modifyitems(config, items):
    order = config.getoption("--order")
    if order == "collected":
        return
    if order == "reverse":
        items.reverse()
        return
    kind, _, seed = order.partition(":")
    if kind != "shuffle" or not seed:
        raise ValueError(f"--order: expected collected, reverse or shuffle:SEED, got {order!r}")
    rng = random.Random(seed)
    files: dict[str, list] = {}
    for item in items:
        files.setdefault(str(item.path), []).append(item)
    groups = list(files.values())
    rng.shuffle(groups)
    for group in groups:
        rng.shuffle(group)
    items[:] = [item for group in groups for item in group]


def pytest_report_header(config):
    order = config.getoption("--order")
    return None if order == "collected" else f"test order: {order}"
