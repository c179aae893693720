"""Splitting a SQL script into statements the way psql does (pure: no database, no Flask).

`split_sql(text) -> list[Statement]` knows PostgreSQL's quoting (strings, E'' escapes, quoted
identifiers, dollar quotes, nested block comments, line comments, BEGIN ATOMIC bodies), so that
a driver can run one statement at a time and every command tag and error belongs to a numbered
statement with its line. An unterminated quote or comment is a `ScriptError`. Used by
`flask init-db` (papyrus.schema) and by the ops repository's schema_init flow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class ScriptError(ValueError):
    """The SQL file cannot be used (bad input): missing, unreadable, unsplittable, unsafe."""


@dataclass(frozen=True)
class Statement:
    number: int  # 1-based among the script's statements
    line: int  # line of the statement's first character in the file
    text: str  # without the terminating ";"

    @property
    def first_line(self) -> str:
        first = self.text.splitlines()[0].strip() if self.text else ""
        return first if len(first) <= 120 else first[:117] + "..."

    def line_at(self, position: int) -> int:
        """File line of the 1-based character `position` in the statement (libpq's error
        position)."""
        return self.line + self.text[: max(position - 1, 0)].count("\n")


_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$")


def _ident_char(c: str) -> bool:
    return c.isalnum() or c in "_$"


def split_sql(sql: str) -> list[Statement]:
    """Split `sql` at top-level semicolons, the way psql does.

    Comments between statements are dropped; comments inside a statement are kept. A statement
    without a final ";" at the end of the text still counts. Raises ScriptError for an
    unterminated string, identifier, dollar quote or block comment.
    """
    n = len(sql)
    i = 0
    line = 1
    out: list[Statement] = []
    start: int | None = None
    start_line = 0
    words = 0  # identifiers seen in this statement (psql's identifier_count)
    depth = 0  # BEGIN/CASE ... END nesting after the first word (BEGIN ATOMIC bodies)

    def scan_to(end: int, what: str, at_line: int) -> int:
        if end < 0:
            raise ScriptError(f"unterminated {what} starting at line {at_line}")
        return end

    while i < n:
        c = sql[i]
        if c == "\n":
            line += 1
            i += 1
            continue
        if c.isspace():
            i += 1
            continue
        if c == "-" and sql.startswith("--", i):
            nl = sql.find("\n", i)
            i = n if nl < 0 else nl
            continue
        if c == "/" and sql.startswith("/*", i):
            j, level = i + 2, 1
            while level:
                j = scan_to(min((k for k in (sql.find("/*", j), sql.find("*/", j)) if k >= 0),
                                default=-1), "block comment", line)
                level += 1 if sql.startswith("/*", j) else -1
                j += 2
            line += sql.count("\n", i, j)
            i = j
            continue
        if c == ";" and depth == 0:
            if start is not None:
                out.append(Statement(len(out) + 1, start_line, sql[start:i].rstrip()))
            start, words = None, 0
            i += 1
            continue
        if start is None:
            start, start_line = i, line
        if c == "'":
            escapes = i > 0 and sql[i - 1] in "eE" and (i < 2 or not _ident_char(sql[i - 2]))
            j = i + 1
            while True:
                j = scan_to(j if j < n else -1, "string", line)
                ch = sql[j]
                if ch == "\\" and escapes:
                    j += 2
                elif ch == "'":
                    if sql.startswith("''", j):
                        j += 2
                    else:
                        break
                else:
                    j += 1
            line += sql.count("\n", i, j)
            i = j + 1
            continue
        if c == '"':
            j = i + 1
            while True:
                j = scan_to(sql.find('"', j), "quoted identifier", line)
                if sql.startswith('""', j):
                    j += 2
                else:
                    break
            line += sql.count("\n", i, j)
            i = j + 1
            continue
        if c == "$" and not (i > 0 and _ident_char(sql[i - 1])):
            m = _DOLLAR_TAG.match(sql, i)
            if m:
                end = scan_to(sql.find(m.group(0), m.end()), "dollar-quoted string", line)
                j = end + len(m.group(0))
                line += sql.count("\n", i, j)
                i = j
                continue
            i += 1
            continue
        if c.isalpha() or c == "_":
            j = i + 1
            while j < n and _ident_char(sql[j]):
                j += 1
            word = sql[i:j].upper()
            words += 1
            if word in ("BEGIN", "CASE") and words > 1:
                depth += 1
            elif word == "END" and depth > 0:
                depth -= 1
            i = j
            continue
        i += 1
    if start is not None:
        out.append(Statement(len(out) + 1, start_line, sql[start:].rstrip()))
    return out
