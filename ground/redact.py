"""Redaction: secrets never reach a log line, an evidence file, a Prefect artifact or an error.

Two layers:

* registered values (`Redactor.add`, `Redactor.add_secret_json`): the DB password, tokens… are
  replaced wherever they appear, also in their URL-encoded, JSON-escaped and repr forms;
* patterns that need no registration: credentials in URLs (`postgresql://user:pw@host`),
  `password=…`/`PGPASSWORD=…`/`*_token=…` assignments, `"password": "…"` fields,
  `aws_secret_access_key`, `Authorization: Bearer/Basic …`, PEM private keys.

The marker is always ``***``. `redact` is idempotent and, for registered values, runs to a fixed
point, so no registered value survives even when replacements bring pieces together.

This module is the pure redactor; `ground.log_redaction` puts it in front of the process's
logging, `print` and `sys.excepthook`.
"""

from __future__ import annotations

import json
import re
import threading
import traceback
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, quote_plus

MARK = "***"
MIN_SECRET_LEN = 4
# Called whenever the process-wide REDACTOR learns a secret (see ground.log_redaction).
ON_PROCESS_SECRET: list = []

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
            # to call install_log_redaction() first (ground.log_redaction registers itself).
            for hook in ON_PROCESS_SECRET:
                hook()

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
