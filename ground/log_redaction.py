"""Process-wide redaction: `install_log_redaction()` puts the process's `REDACTOR` in front of
every logging handler (Prefect's console handler and its API log handler included), in the
log-record factory (so handlers created later are covered too), in `print` and in
`sys.excepthook`. The redactor itself is `ground.redact`.
"""

from __future__ import annotations

import builtins
import logging
import sys
import threading
import traceback
from contextlib import suppress
from typing import Any

from ground.redact import ON_PROCESS_SECRET, REDACTOR, Redactor, is_sensitive_key

# --------------------------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------------------------
_FMT = logging.Formatter()
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "_papyrus_redacted"}


def redact_record(record: logging.LogRecord, redactor: Redactor | None = None) -> None:
    """Rewrite a log record in place: message (msg % args), exception and stack text.

    Structured args are left alone when the rendered message holds no secret."""
    red = redactor or REDACTOR
    # A plain tuple of ints on the record (never the pattern: formatters that dump
    # record.__dict__, JSON ones for instance, would print the secrets it is built from).
    stamp = (id(red), red.generation)
    if getattr(record, "_papyrus_redacted", None) == stamp:
        return  # already done against the same set of secrets
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: log the raw pieces, redacted
        message = f"{record.msg!s} {record.args!r}" if record.args else str(record.msg)
        record.msg, record.args = red.redact(message), ()
    else:
        clean = red.redact(message)
        if clean != message or not isinstance(record.msg, str):
            record.msg, record.args = clean, ()
    if record.exc_info and record.exc_info[0] is not None:
        text = record.exc_text or _FMT.formatException(record.exc_info)
        clean = red.redact(text)
        if clean != text:
            # Formatters print exc_text when set; dropping exc_info keeps formatters that
            # render the exception themselves (rich, JSON) from reading the original.
            record.exc_text, record.exc_info = clean, None
    elif record.exc_text:
        record.exc_text = red.redact(record.exc_text)
    if record.stack_info:
        record.stack_info = red.redact(record.stack_info)
    # `extra=` fields: printed by JSON/structured formatters.
    for key in record.__dict__.keys() - _STANDARD_ATTRS:
        value = record.__dict__[key]
        if isinstance(value, (str, bytes)) and not is_sensitive_key(key):
            record.__dict__[key] = red.redact(value)
        elif isinstance(value, (str, bytes, int, float, dict, list, tuple)):
            record.__dict__[key] = red.redact_obj({key: value})[key]
    record._papyrus_redacted = stamp


class RedactingFilter(logging.Filter):
    """A filter that never drops a record, only redacts it."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or REDACTOR

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            redact_record(record, self.redactor)
        except Exception:  # never let redaction break logging; drop rather than leak
            return False
        return True


_FILTER = RedactingFilter(REDACTOR)
_install_lock = threading.RLock()


def _has_filter(obj: logging.Filterer) -> bool:
    return any(isinstance(f, RedactingFilter) for f in obj.filters)


def _all_loggers() -> list[logging.Logger]:
    loggers: list[logging.Logger] = [logging.getLogger()]
    for lg in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(lg, logging.Logger):
            loggers.append(lg)
    return loggers


def _install_filters() -> None:
    for lg in _all_loggers():
        if (lg.name == "root" or lg.name.startswith("prefect") or lg.name.startswith("papyrus")) \
                and not _has_filter(lg):
            lg.addFilter(_FILTER)
        for handler in list(lg.handlers):
            if not _has_filter(handler):
                handler.addFilter(_FILTER)


def _install_record_factory() -> None:
    current = logging.getLogRecordFactory()
    if getattr(current, "_papyrus_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        with suppress(Exception):  # the handler filters still run (and drop what fails)
            redact_record(record)
        return record

    factory._papyrus_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_real_print = builtins.print


def _redacting_print(*args: Any, sep: str | None = " ", end: str | None = "\n",
                     file: Any = None, flush: bool = False) -> None:
    if file is None or file in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        text = (" " if sep is None else sep).join(str(a) for a in args)
        _real_print(REDACTOR.redact(text), end=end, file=file, flush=flush)
    else:
        _real_print(*args, sep=sep, end=end, file=file, flush=flush)


_redacting_print._papyrus_redacting = True  # type: ignore[attr-defined]


def _install_print() -> None:
    current = builtins.print
    if getattr(current, "_papyrus_redacting", False):
        return
    # Inside a `log_prints=True` run Prefect has swapped in `print_as_log`, which logs through
    # the (filtered) run logger and restores its saved `print` afterwards: leave it alone.
    if current is _real_print:
        builtins.print = _redacting_print


def _redacting_excepthook(exc_type, exc, tb) -> None:
    text = "".join(traceback.format_exception(exc_type, exc, tb))
    sys.stderr.write(REDACTOR.redact(text))


def _install_excepthook() -> None:
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _redacting_excepthook


def _patch_prefect_setup_logging() -> None:
    """Prefect's `setup_logging` (re)creates handlers; re-attach the filters afterwards."""
    try:
        from prefect.logging import configuration
    except Exception:  # pragma: no cover - prefect is a hard dependency
        return
    original = configuration.setup_logging
    if getattr(original, "_papyrus_redacting", False):
        return

    def setup_logging(*args: Any, **kwargs: Any):
        result = original(*args, **kwargs)
        _install_filters()
        return result

    setup_logging._papyrus_redacting = True  # type: ignore[attr-defined]
    configuration.setup_logging = setup_logging


def install_log_redaction(*, wrap_print: bool = True, excepthook: bool = True) -> None:
    """Idempotent and cheap: call it after importing Prefect (every flow module does) and again
    whenever in doubt. Routes every log record, `print` and uncaught traceback through `REDACTOR`:

    * a `RedactingFilter` on the root logger, the prefect*/papyrus* loggers and every handler
      attached to any logger (Prefect's `PrefectConsoleHandler` on root, `APILogHandler` on
      `prefect.flow_runs`/`prefect.task_runs`, `WorkerAPILogHandler`…);
    * the log-record factory, so records are clean before any handler — including handlers
      added later (pytest's caplog, a re-run of Prefect's `setup_logging`) — sees them;
    * `print` (when Prefect's `log_prints` is off; when on, its prints are log records);
    * `sys.excepthook`, when nobody else has replaced it.
    """
    with _install_lock:
        _install_record_factory()
        _install_filters()
        # Importing Prefect only for this would cost seconds in processes that never use it; a
        # process that imports it later is covered by the record factory, and the next call
        # (every EvidenceBundle.open makes one) attaches the filters to its handlers.
        if "prefect.logging.configuration" in sys.modules:
            _patch_prefect_setup_logging()
        if wrap_print:
            _install_print()
        if excepthook:
            _install_excepthook()


ON_PROCESS_SECRET.append(install_log_redaction)
