"""The SQL splitter and the script loader: no database needed."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from papyrus.sqlsplit import ScriptError, split_sql

from tasks.schema.script import DEFAULT_SCRIPT, load_script


def texts(sql: str) -> list[str]:
    return [s.text for s in split_sql(sql)]


def test_init_sql_splits_into_numbered_statements_with_lines():
    script = load_script()
    assert script.path == str(DEFAULT_SCRIPT)
    assert script.sha256 == hashlib.sha256(DEFAULT_SCRIPT.read_bytes()).hexdigest()
    lines = DEFAULT_SCRIPT.read_text().splitlines()
    assert [s.number for s in script.statements] == list(range(1, len(script.statements) + 1))
    for s in script.statements:
        assert lines[s.line - 1].strip().startswith(s.first_line.rstrip("."))
    assert script.statements[0].first_line.startswith("CREATE TABLE IF NOT EXISTS skus")


@pytest.mark.parametrize("sql, expected", [
    ("SELECT 1; SELECT 2", ["SELECT 1", "SELECT 2"]),
    ("SELECT ';' ; SELECT 'it''s;'", ["SELECT ';'", "SELECT 'it''s;'"]),
    ("SELECT E'a\\';b'; SELECT 2", ["SELECT E'a\\';b'", "SELECT 2"]),
    ("SELECT 'a\\'; SELECT 2", ["SELECT 'a\\'", "SELECT 2"]),  # standard strings: \ is plain
    ('SELECT ";x""y"; SELECT 2', ['SELECT ";x""y"', "SELECT 2"]),
    ("SELECT $$a;b$$; SELECT $f$ $$ ; $f$", ["SELECT $$a;b$$", "SELECT $f$ $$ ; $f$"]),
    ("SELECT $1; SELECT a$b; SELECT 2", ["SELECT $1", "SELECT a$b", "SELECT 2"]),
    ("-- a; comment\nSELECT 1 -- tail;\n; /* x; /* nested; */ y; */ SELECT 2;",
     ["SELECT 1 -- tail;", "SELECT 2"]),
    ("; ;\n;SELECT 1;;", ["SELECT 1"]),
    ("-- only a comment;\n/* and; another */\n", []),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true "
     "THEN 1 END; END; SELECT 2",
     ["CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true "
      "THEN 1 END; END", "SELECT 2"]),
])
def test_split_examples(sql, expected):
    assert texts(sql) == expected


def test_line_numbers_and_error_positions():
    sql = "-- header\n\nCREATE TABLE a (\n  x int\n);\n/* c\n */ SELECT\n 'multi\nline';\nSELECT 3"
    stmts = split_sql(sql)
    assert [(s.number, s.line) for s in stmts] == [(1, 3), (2, 7), (3, 10)]
    assert stmts[0].first_line == "CREATE TABLE a ("
    assert stmts[0].line_at(stmts[0].text.index("x") + 1) == 4


@pytest.mark.parametrize("sql, what", [
    ("SELECT 'open", "string"),
    ('SELECT "open', "quoted identifier"),
    ("SELECT $x$ open $y$", "dollar-quoted string"),
    ("SELECT 1 /* open /* nested */", "block comment"),
])
def test_unterminated_is_a_script_error(sql, what):
    with pytest.raises(ScriptError, match=f"unterminated {what} starting at line 1"):
        split_sql(sql)


@pytest.mark.parametrize("body, message", [
    ("BEGIN;\nCREATE TABLE t (x int);\nCOMMIT;", "transaction control"),
    ("CREATE TABLE t (x int);\nROLLBACK;", r"statement 2 \(line 2\) is transaction control"),
    ("\\connect other\nCREATE TABLE t (x int);", "psql meta-command"),
    ("-- nothing here\n", "no SQL statements"),
    ("SELECT 'unterminated;\n", "unterminated string"),
])
def test_unusable_scripts_are_refused_before_any_connection(tmp_path, body, message):
    p = tmp_path / "x.sql"
    p.write_text(body)
    with pytest.raises(ScriptError, match=message):
        load_script(p)


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(ScriptError, match="not found"):
        load_script(tmp_path / "nope.sql")
    p = tmp_path / "latin1.sql"
    p.write_bytes(b"SELECT '\xe9';")
    with pytest.raises(ScriptError, match="not UTF-8"):
        load_script(p)


# -- property: joining statements with ";" and splitting gives them back ------------------------
_word = st.sampled_from(["SELECT", "x", "foo_bar", "t1", "a$b", "1", "42.5", "+", "(", ")", ",",
                         "=", "::", "NULL", "E", "now()", "$1", "begin_x", "end_y"])
_plain = st.text(alphabet=st.sampled_from(list("ab ;'\"$\\-*/\n")), max_size=12)


@st.composite
def _token(draw):
    kind = draw(st.integers(0, 6))
    body = draw(_plain)
    if kind == 0:
        return draw(_word)
    if kind == 1:
        return "'" + body.replace("'", "''") + "'"
    if kind == 2:
        esc = body.replace("\\", "\\\\").replace("'", "\\'")
        return "E'" + esc + "'"
    if kind == 3:
        return '"' + (body.replace('"', '""') or "q") + '"'
    if kind == 4:
        tag = draw(st.sampled_from(["", "f", "body_1"]))
        inner = body.replace("$", "")  # cannot contain its own closing tag
        return f"${tag}${inner}${tag}$"
    if kind == 5:
        return "/* " + body.replace("*", "").replace("/", "") + " */"  # no "*/" can re-form
    return "-- " + body.replace("\n", " ") + "\n"


@st.composite
def _statement(draw):
    """Raw statement text (may end with a line comment and its newline)."""
    toks = [draw(_word.filter(lambda w: w not in ("E",)))]  # starts with code, not a comment
    toks += draw(st.lists(_token(), max_size=8))
    return " ".join(toks)


_between = st.sampled_from(["", "\n", "\n\n", " -- between; statements\n", "\n/* ; */\n"])


@settings(max_examples=100, deadline=None)
@given(st.lists(_statement(), min_size=1, max_size=6), st.lists(_between, min_size=6,
                                                                 max_size=6))
def test_split_roundtrip(statements, gaps):
    sql = "".join(f"{gaps[i]}{s};" for i, s in enumerate(statements))
    out = split_sql(sql)
    assert [s.text for s in out] == [s.rstrip() for s in statements]
    assert [s.number for s in out] == list(range(1, len(statements) + 1))
    lines = sql.split("\n")
    for s in out:
        assert s.text.split("\n")[0] in lines[s.line - 1]


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_split_never_crashes_and_never_invents_text(sql):
    try:
        out = split_sql(sql)
    except ScriptError:
        return
    for s in out:
        assert s.text and s.text in sql
        assert ";" not in s.text or any(q in s.text for q in "'\"$-/") or "BEGIN" in \
            s.text.upper() or "CASE" in s.text.upper()


def test_apply_gate_refuses_a_checksum_that_did_not_pass_without_connecting():
    from tasks.schema.stages import execute_apply

    script = load_script()
    for passed in (None, "0" * 64):
        r = execute_apply(None, script, passed, "tester")  # no connection: it must not be used
        assert r["outcome"] == "refused" and not r["ok"]
        assert "did not pass a dry run" in r["error"] and "-- result: REFUSED" in r["log"]
