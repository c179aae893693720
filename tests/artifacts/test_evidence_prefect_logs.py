"""Log redaction inside real Prefect flow runs (the session's Prefect API): the canary logged
through the run logger, printed with log_prints, logged by a task and raised in an exception
never reaches the API logs or the console; the redacted lines do."""

from __future__ import annotations

import logging
import sys

import pytest

# Imported at collection on purpose: the first `from prefect import flow` runs Prefect's
# setup_logging, which binds its console handler to whatever sys.stderr is at that moment; done
# inside a capfd test, that is capfd's stream, closed after the test ("I/O operation on closed
# file" at the end of the session).
from prefect import flow, task  # noqa: E402  (isort: keep with the third-party group)
from prefect.logging import get_run_logger

from tests.support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("prefect_server")


class _CurrentStderr:
    """Writes to whatever sys.stderr is when written to (capfd swaps its stream between the
    setup and call phases, so a stream object taken in a fixture is closed by the test)."""

    encoding = "utf-8"

    def write(self, text):
        return sys.stderr.write(text)

    def flush(self):
        sys.stderr.flush()

    def isatty(self):
        return False


@pytest.fixture
def console(capfd):
    """Prefect's console handler writing to capfd's stderr for the test (it is bound to the
    session's capture stream otherwise, which capfd does not see); yields a reader."""
    from prefect.logging.handlers import PrefectConsoleHandler

    handlers = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    assert handlers, "Prefect's console handler is not on the root logger"
    saved = [(h.stream, h.console.file) for h in handlers]
    proxy = _CurrentStderr()
    for h in handlers:
        h.stream = proxy
        h.console.file = proxy
    yield lambda: "".join(capfd.readouterr())
    for h, (stream, file) in zip(handlers, saved, strict=True):
        h.stream = stream
        h.console.file = file


def _logs(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))


def _flush():
    from prefect.logging.handlers import APILogHandler

    APILogHandler.flush(APILogHandler())


def test_flow_logs_prints_and_errors_are_redacted(canary, console):
    from ground.log_redaction import install_log_redaction

    install_log_redaction()

    @task
    def leaky_task():
        get_run_logger().warning("task sees PGPASSWORD=%s", canary)
        print(f"task print {canary}")

    @flow(log_prints=True)
    def leaky_flow():
        log = get_run_logger()
        log.info("connecting to postgresql://papyrus:%s@db:5432/papyrus", canary)
        log.info(f"f-string {canary} end")
        print("printed", canary, "end")
        leaky_task()
        try:
            raise RuntimeError(f"inner password={canary}")
        except RuntimeError:
            log.exception("handled with traceback")
        raise ValueError(f"connection failed for secret {canary}")

    state = leaky_flow(return_state=True)
    assert state.is_failed()
    run_id = state.state_details.flow_run_id
    _flush()
    expected = ("f-string *** end", "printed *** end", "task print ***",
                "handled with traceback", "Encountered exception")

    def all_there():
        logs = _logs(run_id)
        text = "\n".join(entry.message for entry in logs)
        return text if all(e in text for e in expected) else None

    text = wait_for(all_there, timeout=20)
    assert text, "the flow's logs never reached the API"
    assert canary not in text
    assert "postgresql://papyrus:***@db:5432/papyrus" in text
    assert "task sees PGPASSWORD=***" in text
    assert "RuntimeError: inner password=***" in text  # the handled traceback
    assert "ValueError: connection failed for secret ***" in text  # the flow's failure
    shown = console()
    for line in expected + ("postgresql://papyrus:***@db:5432/papyrus",
                            "RuntimeError: inner password=***",
                            "ValueError: connection failed for secret ***"):
        assert line in shown  # the console really was captured…
    assert canary not in shown  # …and never showed the canary


def test_redacted_errors_keep_the_state_message_clean(canary):
    """Prefect stores the exception text as the failed state's message (not a log record, so
    no filter sees it); flows wrap their body in redacted_errors() to keep it clean."""
    from prefect.client.orchestration import get_client

    from ground.redact import RedactedError, redacted_errors

    @flow
    def failing_flow():
        with redacted_errors():
            raise ConnectionError(f"FATAL: password authentication failed ({canary})")

    state = failing_flow(return_state=True)
    assert state.is_failed()
    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(state.state_details.flow_run_id).state
    assert canary not in (stored.message or "")
    assert "ConnectionError: FATAL: password authentication failed (***)" in stored.message
    with pytest.raises(RedactedError):
        state.result()


def test_print_outside_log_prints_is_redacted(canary, capfd):
    from ground.log_redaction import install_log_redaction

    install_log_redaction()

    @flow  # log_prints off: print goes straight to stdout, through the wrapped print
    def quiet_flow():
        print("plain print", canary)

    quiet_flow()
    print("outside any flow", canary, sep=" | ")
    out, _ = capfd.readouterr()
    assert "plain print ***" in out and "outside any flow | ***" in out
    assert canary not in out


def test_every_handler_carries_the_filter(canary):
    import prefect  # noqa: F401 - Prefect's handlers exist

    from ground.log_redaction import RedactingFilter, install_log_redaction

    install_log_redaction()
    install_log_redaction()  # idempotent
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    handlers = {h for lg in loggers for h in lg.handlers}
    kinds = {type(h).__name__ for h in handlers}
    assert {"APILogHandler", "PrefectConsoleHandler"} <= kinds
    for h in handlers:
        assert sum(isinstance(f, RedactingFilter) for f in h.filters) == 1, h
    for name in ("root", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        lg = logging.getLogger(None if name == "root" else name)
        assert sum(isinstance(f, RedactingFilter) for f in lg.filters) == 1, name
