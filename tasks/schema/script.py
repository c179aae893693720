"""The SQL file the schema_init flow runs: its bytes, their SHA-256 and its statements.

``load_script(path) -> Script``: anything that would break the wrapping transaction
(BEGIN/COMMIT/ROLLBACK/..., psql meta-commands) or cannot be split (an unterminated quote or
comment) is a ``ScriptError`` before any connection. The default is the init.sql shipped inside
the `papyrus` package, the very file `flask init-db` runs; the splitter is the service's
(`papyrus.sqlsplit`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from papyrus.sqlsplit import ScriptError, Statement, split_sql

from ground.settings import ROOT

__all__ = ["DEFAULT_SCRIPT", "Script", "ScriptError", "Statement", "load_script", "split_sql"]

# The schema file inside the installed service package (an editable install: the repository's).
DEFAULT_SCRIPT = Path(str(resources.files("papyrus").joinpath("sql/init.sql")))

# First words that would end or nest our BEGIN ... ROLLBACK/COMMIT.
_TRANSACTION_CONTROL = {"BEGIN", "COMMIT", "ROLLBACK", "END", "START", "SAVEPOINT", "RELEASE",
                        "ABORT"}


@dataclass(frozen=True)
class Script:
    path: str
    name: str
    sha256: str
    statements: tuple[Statement, ...]
    data: bytes = field(repr=False)

    def public(self) -> dict[str, Any]:
        return {"path": self.path, "name": self.name, "sha256": self.sha256,
                "statements": len(self.statements), "bytes": len(self.data)}


def _display_name(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def load_script(path: str | Path | None = None) -> Script:
    """Read, hash and split the SQL file (default: the packaged init.sql)."""
    p = Path(path) if path else DEFAULT_SCRIPT
    if not p.is_file():
        raise ScriptError(f"SQL file {p} not found" if not p.exists() else
                          f"SQL file {p} is not a regular file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ScriptError(f"SQL file {p}: cannot read ({e.strerror})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ScriptError(f"SQL file {p}: not UTF-8 (byte {e.start})") from None
    try:
        statements = split_sql(text)
    except ScriptError as e:
        raise ScriptError(f"SQL file {p}: {e}") from None
    if not statements:
        raise ScriptError(f"SQL file {p}: no SQL statements")
    for st in statements:
        if st.text.startswith("\\"):
            raise ScriptError(f"SQL file {p}: statement {st.number} (line {st.line}) is a psql "
                              f"meta-command, which this runner does not support")
        words = st.text.split(None, 2)
        first = words[0].upper().rstrip(";")
        if first in _TRANSACTION_CONTROL or (
                first == "PREPARE" and len(words) > 1 and words[1].upper() == "TRANSACTION"):
            raise ScriptError(f"SQL file {p}: statement {st.number} (line {st.line}) is "
                              f"transaction control ({first}); the runner wraps the script in "
                              f"BEGIN ... ROLLBACK/COMMIT itself")
    return Script(path=str(p), name=_display_name(p), sha256=hashlib.sha256(data).hexdigest(),
                  statements=tuple(statements), data=data)
