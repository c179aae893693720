"""EventBridge event-pattern matching, in Python, for the subset of the language Papyrus uses.

moto's EventBridge does not match inside arrays (and moto never evaluates anything we could
observe for an ECS task-state-change rule), so the rule's pattern is checked here, against
realistic event documents, instead of trusting the sandbox.

Implemented (and nothing else — an unknown operator is a `PatternError`, never a silent miss):

- **exact values**: strings, numbers, `true`/`false`, `null`; a number equals a number of the
  same value (`3 == 3.0`), but `true` is never `1` and `"3"` is never `3`;
- **arrays of alternatives**: every leaf of a pattern is an array; it matches when any of its
  entries matches;
- **nested objects**: a pattern object matches when every key matches; keys absent from the
  pattern are ignored;
- **arrays in the event**: EventBridge flattens the event, so a field inside an array of values
  or of objects is the set of all its values; a leaf matches when any of them matches. Like
  EventBridge, two fields under the same array of objects are matched independently (they may
  be satisfied by different elements);
- `{"prefix": "s"}`, `{"suffix": "s"}`, `{"equals-ignore-case": "s"}` (strings only);
- `{"wildcard": "*s*"}`: `*` matches any run of characters, `\\*` a literal star;
- `{"anything-but": v}` with `v` a value, a list of values, `{"prefix": s}` or `{"suffix": s}`:
  matches a *present* value that is not one of those (a missing field never matches);
- `{"numeric": [">", 0, "<=", 5]}` with `<`, `<=`, `=`, `>=`, `>`: numbers only;
- `{"exists": true|false}` on leaves: some value is present / no value at all;
- `"$or": [pattern, pattern, ...]` at any object level: that object matches when its other keys
  match and at least one alternative matches.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["PatternError", "matches", "operators", "validate"]

_MISSING = object()
_NUMERIC_OPS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "=": lambda a, b: a == b,
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
}


class PatternError(ValueError):
    """The pattern uses something outside the implemented subset, or is malformed."""


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, no bool/number or string/number confusion."""
    if _is_number(a) and _is_number(b):
        return a == b
    if type(a) is not type(b):
        return False
    return a == b


def _leaf_values(node: Any) -> list[Any]:
    """The scalar values at this point of the event, flattening arrays (EventBridge style)."""
    if node is _MISSING:
        return []
    if isinstance(node, list):
        out: list[Any] = []
        for item in node:
            out.extend(_leaf_values(item))
        return out
    if isinstance(node, dict):
        return []  # an object is not a value a leaf can match
    return [node]


def _children(node: Any, key: str) -> Any:
    """The event's value(s) for `key`, looking through arrays of objects."""
    if isinstance(node, dict):
        return node.get(key, _MISSING)
    if isinstance(node, list):
        found = [c for c in (_children(item, key) for item in node) if c is not _MISSING]
        return found if found else _MISSING
    return _MISSING


def _wildcard(expr: str) -> re.Pattern:
    parts, i = [], 0
    while i < len(expr):
        if expr[i] == "\\" and i + 1 < len(expr) and expr[i + 1] == "*":
            parts.append(re.escape("*"))
            i += 2
        elif expr[i] == "*":
            parts.append(".*")
            i += 1
        else:
            parts.append(re.escape(expr[i]))
            i += 1
    return re.compile("".join(parts), re.DOTALL)


def _string_op(op: str, arg: Any, value: Any) -> bool:
    if not isinstance(arg, str):
        raise PatternError(f"{op!r} takes a string, got {arg!r}")
    if not isinstance(value, str):
        return False
    if op == "prefix":
        return value.startswith(arg)
    if op == "suffix":
        return value.endswith(arg)
    if op == "equals-ignore-case":
        return value.casefold() == arg.casefold()
    if op == "wildcard":
        return _wildcard(arg).fullmatch(value) is not None
    raise PatternError(f"unsupported operator {op!r}")


def _numeric(spec: Any, value: Any) -> bool:
    if not isinstance(spec, list) or not spec or len(spec) % 2 or len(spec) > 4:
        raise PatternError(f"'numeric' takes [op, number] or [op, n, op, n], got {spec!r}")
    pairs = list(zip(spec[0::2], spec[1::2], strict=True))
    for op, bound in pairs:
        if op not in _NUMERIC_OPS or not _is_number(bound):
            raise PatternError(f"bad numeric comparison {op!r} {bound!r}")
    if not _is_number(value):
        return False
    return all(_NUMERIC_OPS[op](value, bound) for op, bound in pairs)


def _anything_but(arg: Any, value: Any) -> bool:
    if isinstance(arg, dict):
        if len(arg) != 1 or next(iter(arg)) not in ("prefix", "suffix"):
            raise PatternError(f"'anything-but' takes a value, a list, prefix or suffix: {arg!r}")
        op, sub = next(iter(arg.items()))
        return isinstance(value, str) and not _string_op(op, sub, value)
    excluded = arg if isinstance(arg, list) else [arg]
    for e in excluded:
        if isinstance(e, dict | list):
            raise PatternError(f"'anything-but' list entries must be values, got {e!r}")
    return not any(_same(value, e) for e in excluded)


def _matcher_matches(matcher: Any, values: list[Any]) -> bool:
    """One entry of a leaf array against the flattened values present in the event."""
    if not isinstance(matcher, dict):
        return any(_same(v, matcher) for v in values)
    if len(matcher) != 1:
        raise PatternError(f"a content filter has exactly one operator, got {matcher!r}")
    op, arg = next(iter(matcher.items()))
    if op == "exists":
        if not isinstance(arg, bool):
            raise PatternError(f"'exists' takes true or false, got {arg!r}")
        return bool(values) if arg else not values
    if op == "numeric":
        if not values:
            return _numeric(arg, None)  # validates, then False: no value to compare
        return any([_numeric(arg, v) for v in values])
    if op == "anything-but":
        if not values:
            _anything_but(arg, None)  # still validate
            return False
        return any(_anything_but(arg, v) for v in values)
    if op in ("prefix", "suffix", "equals-ignore-case", "wildcard"):
        if not values:
            _string_op(op, arg, None)
            return False
        return any(_string_op(op, arg, v) for v in values)
    raise PatternError(f"unsupported operator {op!r}")


def _match_object(pattern: dict, event_node: Any) -> bool:
    if not isinstance(pattern, dict):
        raise PatternError(f"a pattern level must be an object, got {pattern!r}")
    # Evaluate every key (no short-circuit) so a malformed pattern fails loudly, not by luck.
    results = []
    for key, sub in pattern.items():
        if key == "$or":
            if not isinstance(sub, list) or len(sub) < 2:
                raise PatternError("'$or' takes a list of at least two patterns")
            results.append(any([_match_object(alt, event_node) for alt in sub]))
            continue
        child = _children(event_node, key)
        if isinstance(sub, dict):
            # An absent parent is walked too: its leaves see no values (`exists: false` holds).
            results.append(_match_object(sub, child))
        elif isinstance(sub, list):
            if not sub:
                raise PatternError(f"the leaf for {key!r} is an empty array")
            values = _leaf_values(child)
            results.append(any([_matcher_matches(m, values) for m in sub]))
        else:
            raise PatternError(f"the leaf for {key!r} must be an array, got {sub!r}")
    return all(results)


def matches(pattern: dict | str, event: dict | str) -> bool:
    """Whether `event` matches the EventBridge `pattern` (either may be a JSON string)."""
    if isinstance(pattern, str):
        pattern = json.loads(pattern)
    if isinstance(event, str):
        event = json.loads(event)
    if not isinstance(pattern, dict) or not pattern:
        raise PatternError("a pattern is a non-empty JSON object")
    return _match_object(pattern, event)


def validate(pattern: dict | str) -> dict:
    """Parse and check a pattern against the implemented subset; returns it as a dict."""
    if isinstance(pattern, str):
        pattern = json.loads(pattern)
    matches(pattern, {})  # walks the whole pattern (no short-circuit) and raises on bad parts
    return pattern


def operators(pattern: dict) -> set[str]:
    """The content-filter operators (and `$or`) a pattern uses, for documentation checks."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$or":
                    found.add(k)
                    for alt in v:
                        walk(alt)
                else:
                    walk(v)
        elif isinstance(node, list):
            for m in node:
                if isinstance(m, dict):
                    found.update(m.keys())

    walk(pattern)
    return found
