"""The one env-file format: `KEY=value` lines, written by the sandbox (`.sandbox/env`) and read by
the CLI, the local Prefect tooling and the tests. No quoting: a value is everything after the
first `=`; blank lines and `#` comments are skipped."""

from __future__ import annotations

import os
from pathlib import Path


def read_env_file(path: Path | str) -> dict[str, str]:
    """The pairs in `path` ({} when it does not exist)."""
    p = Path(path)
    if not p.is_file():
        return {}
    pairs: dict[str, str] = {}
    for line in p.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            pairs[key.strip()] = value
    return pairs


def write_atomically(path: Path | str, text: str) -> Path:
    """Replace `path` in one step: a reader sees the old file or the new one, never a partial
    write (`Path.write_text` truncates first, so a reader can catch an empty file)."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, p)
    return p


def write_env_file(path: Path | str, pairs: dict[str, str]) -> Path:
    return write_atomically(path, "".join(f"{k}={v}\n" for k, v in pairs.items()))


def apply_env_file(path: Path | str | None) -> dict[str, str]:
    """Load `path` into os.environ; never overrides a variable already set. Returns what it set."""
    loaded = {k: v for k, v in read_env_file(path).items() if k not in os.environ} if path else {}
    os.environ.update(loaded)
    return loaded
