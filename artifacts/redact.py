"""Redaction: secrets never reach a log line, an evidence file, a Prefect artifact or an error.

Two layers:

* registered values (`Redactor.add`, `Redactor.add_secret_json`): the DB password, tokens… are
  replaced wherever they appear, also in their URL-encoded, JSON-escaped and repr forms;
* patterns that need no registration: credentials in URLs (`postgresql://user:pw@host`),
  `password=…`/`PGPASSWORD=…`/`*_token=…` assignments, `"password": "…"` fields,
  `aws_secret_access_key`, `Authorization: Bearer/Basic …`, PEM private keys.

The marker is always ``***``. `redact` is idempotent and, for registered values, runs to a fixed
point, so no registered value survives even when replacements bring pieces together.

`install_log_redaction()` puts the process-wide `REDACTOR` in front of every logging handler
(Prefect's console handler and its API log handler included), in the log-record factory (so
handlers created later are covered too), in `print` and in `sys.excepthook`.
"""

from __future__ import annotations

import builtins
import json
import logging
import re
import sys
import threading
import traceback
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import quote, quote_plus

MARK = "***"
MIN_SECRET_LEN = 4

# Keys whose values are secrets, after lower-casing and dropping non-alphanumerics…
_SENSITIVE_WORDS = (
    "password", "passwd", "passphrase", "secret", "token", "authorization", "apikey",
    "privatekey", "credential", "cookie", "sessionkey",
)
# …unless the key only names or describes the secret (SecretId, token_secret_id, password_present).
_NOT_SENSITIVE_SUFFIXES = (
    "id", "ids", "arn", "arns", "name", "names", "present", "type", "version", "versionid",
    "versionstage", "versionstages", "length", "len", "status", "source", "ref", "path", "file",
    "expires", "expiry", "expiration", "expiresat", "expiresin", "ttl", "count", "hint",
    "changed", "match", "matches", "ok", "set", "policy",
)


def is_sensitive_key(key: Any) -> bool:
    """True for keys like password, PGPASSWORD, SecretString, api_token, Authorization."""
    if not isinstance(key, str):
        return False
    k = re.sub(r"[^a-z0-9]", "", key.lower())
    if not any(w in k for w in _SENSITIVE_WORDS):
        return False
    return not k.endswith(_NOT_SENSITIVE_SUFFIXES)


# Values that only say whether a secret exists ("password": "present") are kept.
PLACEHOLDERS = frozenset({
    "", MARK, "present", "missing", "absent", "set", "unset", "none", "null", "empty",
    "<redacted>", "(redacted)", "[redacted]", "redacted", "<missing>", "(not set)",
})


def _placeholder(value: str) -> bool:
    return value.strip().lower() in PLACEHOLDERS


_KEY = r"[A-Za-z_][A-Za-z0-9_.\-]*"

_PATTERNS: list[tuple[re.Pattern[str], Any]] = []


def _pattern(regex: str, flags: int = 0):
    def deco(fn):
        _PATTERNS.append((re.compile(regex, flags), fn))
        return fn

    return deco


@_pattern(
    r"-----BEGIN (?P<kind>[A-Z0-9 ]*PRIVATE KEY)-----.*?(?:-----END (?P=kind)-----|\Z)", re.S
)
def _pem(m: re.Match[str]) -> str:
    return f"-----BEGIN {m['kind']}-----{MARK}-----END {m['kind']}-----"


# scheme://user:password@host — the password runs to the last '@' of the authority.
@_pattern(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@'\"]*:)(?P<pw>[^\s/]*?)"
          r"(?P<at>@)(?=[^\s@/?#'\"]*(?:[\s/?#'\"]|$))")
def _url_credentials(m: re.Match[str]) -> str:
    return m["head"] + MARK + m["at"]


# "password": "…" and 'password': '…' (JSON and Python reprs), key checked by is_sensitive_key.
@_pattern(r"(?P<q1>\\?[\"'])(?P<key>[^\"'\s\\]{1,80})(?P=q1)(?P<sep>\s*:\s*)(?P<q2>\\?[\"'])"
          r"(?P<val>(?:(?!(?P=q2))(?:\\.|[^\\]))*)(?P=q2)", re.S)
def _quoted_field(m: re.Match[str]) -> str:
    if not is_sensitive_key(m["key"]) or _placeholder(m["val"]):
        return m[0]
    return f"{m['q1']}{m['key']}{m['q1']}{m['sep']}{m['q2']}{MARK}{m['q2']}"


# Authorization: Bearer x / Basic x (header form), and "Bearer x" anywhere.
@_pattern(r"(?P<head>\bAuthorization\s*[:=]\s*(?:Bearer|Basic|Token|Digest)?\s*)"
          r"(?P<val>[^\s'\",;]+)", re.I)
def _authorization(m: re.Match[str]) -> str:
    return m[0] if m["val"] == MARK else m["head"] + MARK


@_pattern(r"(?P<head>\bBearer\s+)(?P<val>[A-Za-z0-9\-._~+/]+=*)")
def _bearer(m: re.Match[str]) -> str:
    return m["head"] + MARK


# AWS secret access keys: 40 base64-ish characters after the key's name.
@_pattern(r"(?P<head>\b(?:aws_?secret_?access_?key|secret_?access_?key)[\"']?\s*[:=]?\s*[\"']?)"
          r"(?P<val>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])", re.I)
def _aws_secret(m: re.Match[str]) -> str:
    return m["head"] + MARK


# key=value assignments (conninfo, env, CLI flags, query strings): password=…, PGPASSWORD=…,
# --password …, api_token=…; values quoted or bare.
@_pattern(r"(?P<head>(?<![A-Za-z0-9_.\-])(?:--)?(?P<key>" + _KEY + r")\s*=\s*)"
          r"(?P<val>'[^']*'|\"(?:\\.|[^\"\\])*\"|[^\s&;,'\"]+)")
def _assignment(m: re.Match[str]) -> str:
    if not is_sensitive_key(m["key"]) or _placeholder(m["val"].strip("'\"")):
        return m[0]
    val = m["val"]
    quote_char = val[0] if val[0] in "'\"" else ""
    return f"{m['head']}{quote_char}{MARK}{quote_char}"


@_pattern(r"(?P<head>(?<![A-Za-z0-9_\-])--(?:password|passwd|token|secret|api-key)(?:\s+))"
          r"(?P<val>[^\s\-][^\s]*)", re.I)
def _cli_flag(m: re.Match[str]) -> str:
    return m[0] if m["val"] == MARK else m["head"] + MARK


class Redactor:
    """Replaces registered secret values and well-known credential patterns with ``***``.

    Thread-safe: registration swaps in a new compiled pattern under a lock; `redact` reads one
    consistent snapshot.
    """

    def __init__(self, marker: str = MARK) -> None:
        self.marker = marker
        self._lock = threading.Lock()
        self._values: frozenset[str] = frozenset()
        self._regex: re.Pattern[str] | None = None
        self.generation = 0  # bumped on every change of the registered values

    # -- registration -----------------------------------------------------------------------
    def add(self, *values: str | None) -> None:
        """Register secret values; None, empty and values shorter than 4 characters are ignored."""
        forms: set[str] = set()
        for value in values:
            if value is None:
                continue
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            if not isinstance(value, str):
                value = str(value)
            for v in {value, value.strip()}:
                if len(v) < MIN_SECRET_LEN:
                    continue
                forms.add(v)
                # The same secret as it shows up once encoded somewhere else.
                forms.add(quote(v, safe=""))
                forms.add(quote_plus(v, safe=""))
                forms.add(json.dumps(v)[1:-1])
                forms.add(json.dumps(v, ensure_ascii=False)[1:-1])
                forms.add(repr(v)[1:-1])
        forms = {f for f in forms if len(f) >= MIN_SECRET_LEN}
        if not forms:
            return
        with self._lock:
            if forms <= self._values:
                return
            self._values = self._values | forms
            ordered = sorted(self._values, key=lambda s: (-len(s), s))
            self._regex = re.compile("|".join(re.escape(v) for v in ordered))
            self.generation += 1
        if self is REDACTOR:
            # A process that holds a secret redacts its logs, whether or not a flow remembered
            # to call install_log_redaction() first.
            install_log_redaction()

    def add_secret_json(self, text_or_dict: Any) -> None:
        """Register the secret values of a Secrets Manager secret: every value under a key named
        like password/token/secret (at any depth). A non-JSON string is registered whole."""
        doc = text_or_dict
        if isinstance(doc, bytes):
            doc = doc.decode("utf-8", "replace")
        if isinstance(doc, str):
            try:
                doc = json.loads(doc)
            except ValueError:
                self.add(doc)
                return

        def walk(node: Any, sensitive: bool) -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    walk(v, sensitive or is_sensitive_key(k))
            elif isinstance(node, (list, tuple)):
                for v in node:
                    walk(v, sensitive)
            elif sensitive and node is not None and not isinstance(node, bool):
                self.add(str(node))

        walk(doc, False)

    def clear(self) -> None:
        """Forget every registered value (tests)."""
        with self._lock:
            self._values = frozenset()
            self._regex = None
            self.generation += 1

    @property
    def values(self) -> frozenset[str]:
        return self._values

    # -- redaction --------------------------------------------------------------------------
    def _values_pass(self, text: str, regex: re.Pattern[str] | None) -> str:
        if regex is None:
            return text
        # Each replacement shortens the text (secrets are >= 4 chars, the marker 3), so the
        # fixed point exists and is reached quickly.
        while True:
            new = regex.sub(self.marker, text)
            if new == text:
                return new
            text = new

    def redact(self, text: Any) -> str:
        if text is None:
            return ""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if not isinstance(text, str):
            text = str(text)
        regex = self._regex
        for _ in range(8):
            new = text
            for pattern, repl in _PATTERNS:
                new = pattern.sub(repl, new)
            new = self._values_pass(new, regex)
            if new == text:
                break
            text = new
        return self._values_pass(text, regex)

    def redact_obj(self, obj: Any) -> Any:
        """A deep copy of dicts/lists/tuples with every string redacted and the values of
        sensitive keys (password, secret, token, authorization…) masked."""
        return self._obj(obj, False)

    def _obj(self, obj: Any, masked: bool) -> Any:
        if isinstance(obj, dict):
            return {
                (self.redact(k) if isinstance(k, str) else k): self._obj(
                    v, masked or is_sensitive_key(k))
                for k, v in obj.items()
            }
        if isinstance(obj, (list, tuple, set, frozenset)):
            items = [self._obj(v, masked) for v in obj]
            return tuple(items) if isinstance(obj, tuple) else items
        if obj is None or isinstance(obj, bool):
            return obj
        if masked and isinstance(obj, (str, bytes, int, float)):
            if isinstance(obj, str) and _placeholder(obj) and obj not in self._values:
                return obj
            return self.marker if obj not in ("", b"") else obj
        if isinstance(obj, (str, bytes)):
            return self.redact(obj)
        return obj

    def __reduce__(self):
        # The process-wide redactor pickles as a reference to the receiving process's own one;
        # another keeps its values (a copy elsewhere must still redact them).
        if self is REDACTOR:
            return (_process_redactor, ())
        return (_rebuilt_redactor, (self.marker, tuple(sorted(self._values))))

    def __repr__(self) -> str:
        return f"<Redactor: {len(self._values)} registered forms>"

    def __contains__(self, text: str) -> bool:
        """True when `text` still holds a registered value (a check for tests and guards)."""
        regex = self._regex
        return bool(regex and isinstance(text, str) and regex.search(text))


REDACTOR = Redactor()


def _process_redactor() -> Redactor:
    return REDACTOR


def _rebuilt_redactor(marker: str, values: tuple[str, ...]) -> Redactor:
    r = Redactor(marker)
    r.add(*values)
    return r


class RedactedError(RuntimeError):
    """An exception whose message had a secret in it; the original chain is dropped."""


@contextmanager
def redacted_errors(redactor: Redactor | None = None):
    """Re-raise any exception whose text (or chained text) holds a secret as a `RedactedError`
    with the redacted message, so the secret never reaches a Prefect state message or a CLI
    error line. Exceptions without secrets pass through untouched."""
    red = redactor or REDACTOR
    try:
        yield
    except Exception as exc:
        full = "".join(traceback.format_exception(exc))
        if red.redact(full) == full:
            raise
        raise RedactedError(f"{type(exc).__name__}: {red.redact(str(exc))}") from None


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
