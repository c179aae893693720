"""Flow-run names that say what a run does (`deploy prd papyrus@sha256:…`), unless named by hand.

Prefect renames every run of a flow that has `flow_run_name`, including one an operator named
in the UI's *Run name* field or with `prefect deployment run --flow-run-name`. A name given by
hand is what the operator searches the run list for, so it is kept; only the server's generated
name (two words, `adjective-animal`, `prefect.utilities.names.generate_slug(2)`) is replaced.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_GENERATED = re.compile(r"[a-z]+-[a-z]+")


def run_name(template: str) -> Callable[[], str]:
    """A `flow_run_name` callable: `template.format(**parameters)`, or the hand-given name."""

    def name() -> str:
        from prefect.runtime import flow_run

        current = flow_run.get_name()
        if current and not _GENERATED.fullmatch(current):
            return current
        return template.format(**flow_run.get_parameters())

    name.__name__ = f"run_name({template!r})"
    return name
