"""Approval between stages, as the API sees it: a flow run started in the background that pauses
for a person, found by its parameters once it is Paused, its evidence artifact read, then
resumed with the Resume form's answer (the UI's path is tests/support/ui.py's `approve_in_ui`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tests.support.waiting import wait_until


class Background:
    """`fn(**params)` (e.g. `papyrus_ops.runner.run_flow(flow, ...)`) in a thread; `.result()`
    joins it and gives its return value (or raises what it raised)."""

    def __init__(self, fn: Callable[..., Any], **params: Any) -> None:
        self._out: dict[str, Any] = {}

        def run() -> None:
            try:
                self._out["value"] = fn(**params)
            except BaseException as e:  # noqa: BLE001 - handed to the test by result()
                self._out["error"] = e

        self._thread = threading.Thread(target=run, name="background-flow", daemon=True)
        self._thread.start()

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self, timeout: float = 120) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the background flow did not end in {timeout} s"
        if "error" in self._out:
            raise self._out["error"]
        return self._out["value"]


def _client(api: str | None):
    from prefect.client.orchestration import get_client

    if api is None:
        return get_client(sync_client=True)
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(api)


def paused_run(match: Callable[[dict], bool], timeout: float = 90, api: str | None = None,
               background: Background | None = None):
    """The Paused flow run whose parameters satisfy `match` (AssertionError after `timeout`,
    or as soon as `background` ended without pausing)."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    flt = FlowRunFilter(state=FlowRunFilterState(
        type=FlowRunFilterStateType(any_=[StateType.PAUSED])))

    def find():
        if background is not None and background.done():
            raise AssertionError(f"the flow ended without pausing: {background.result()}")
        with _client(api) as c:
            runs = [r for r in c.read_flow_runs(flow_run_filter=flt) if match(r.parameters)]
        return runs[0] if runs else None

    return wait_until(find, timeout, interval=0.3, what="a paused flow run")


def artifact(flow_run_id, key: str, api: str | None = None) -> str:
    """The markdown of the run's artifact `key` ('' when there is none)."""
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    with _client(api) as c:
        arts = c.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            key=ArtifactFilterKey(any_=[key])))
    return str(arts[0].data) if arts else ""


def resume(flow_run_id, approve: bool, reason: str, api: str | None = None) -> None:
    """What the Resume form sends: the run input, validated against the run's Approval model
    (on the API at `api`, else this process's)."""
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api} if api else {}):
        resume_flow_run(flow_run_id, run_input={"approve": approve, "reason": reason})
